#!/usr/bin/env python3
"""Builds a Lambda layer zip: extensions/lambda-secrets-cache (mode 0755), which Lambda
extracts to /opt/extensions/lambda-secrets-cache and starts as an external extension, and the
function's clients where Lambda's runtimes look for a layer's code: python/lambda_secrets_cache.py
(/opt/python is on sys.path) and nodejs/node_modules/lambda-secrets-cache/ (/opt/nodejs/node_modules
is on NODE_PATH), from clients/.

usage: layer.py --arch x86_64|arm64 [--max-glibc 2.26] BINARY OUT.zip

It refuses (exit 1, nothing written) a binary that would not start on every Lambda runtime of
that architecture: not a 64-bit little-endian ELF executable for the architecture, a glibc
symbol version above --max-glibc (Amazon Linux 2 has glibc 2.26, AL2023 2.34), or a shared
library beyond glibc's own and libgcc_s. LAYER_COMPRESSION=store skips compression, for quick
layout checks on a debug build.
"""
import argparse
import os
import re
import stat
import struct
import sys
import zipfile

MACHINES = {"x86_64": 62, "arm64": 183}  # EM_X86_64, EM_AARCH64
INTERPRETERS = {"x86_64": "/lib64/ld-linux-x86-64.so.2", "arm64": "/lib/ld-linux-aarch64.so.1"}
# What every Lambda image has: glibc's libraries and the GCC runtime.
ALLOWED_LIBS = {
    "libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1", "libutil.so.1",
    "libgcc_s.so.1", "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1",
}
SHT_DYNAMIC, SHT_GNU_VERNEED = 6, 0x6FFFFFFE
PT_INTERP, DT_NEEDED = 3, 1


class NotLoadable(Exception):
    pass


def inspect(data: bytes) -> dict:
    """Machine, interpreter, needed libraries and glibc versions of a 64-bit LE ELF file."""
    if data[:4] != b"\x7fELF" or len(data) < 64:
        raise NotLoadable("not an ELF file")
    if data[4] != 2 or data[5] != 1:
        raise NotLoadable("not a 64-bit little-endian ELF file")
    e_type, e_machine = struct.unpack_from("<HH", data, 16)
    if e_type not in (2, 3):  # ET_EXEC, ET_DYN (PIE)
        raise NotLoadable(f"not an executable (e_type {e_type})")
    e_phoff, e_shoff = struct.unpack_from("<QQ", data, 32)
    e_phentsize, e_phnum, e_shentsize, e_shnum = struct.unpack_from("<HHHH", data, 54)

    interpreter = None
    for i in range(e_phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", data, e_phoff + i * e_phentsize)
        if p_type == PT_INTERP:
            interpreter = data[p_offset:p_offset + p_filesz].rstrip(b"\0").decode()

    sections = []
    for i in range(e_shnum):
        name, sh_type, _, _, offset, size, link, info, _, _ = struct.unpack_from(
            "<IIQQQQIIQQ", data, e_shoff + i * e_shentsize)
        sections.append((sh_type, offset, size, link, info))

    def string(section: int, at: int) -> str:
        start = sections[section][1] + at
        return data[start:data.index(b"\0", start)].decode()

    needed, versions = [], set()
    for sh_type, offset, size, link, info in sections:
        if sh_type == SHT_DYNAMIC:
            for at in range(offset, offset + size, 16):
                tag, value = struct.unpack_from("<qQ", data, at)
                if tag == 0:
                    break
                if tag == DT_NEEDED:
                    needed.append(string(link, value))
        elif sh_type == SHT_GNU_VERNEED:
            at = offset
            for _ in range(info):
                _, count, _, aux, next_ = struct.unpack_from("<HHIII", data, at)
                entry = at + aux
                for _ in range(count):
                    _, _, _, name, next_aux = struct.unpack_from("<IHHII", data, entry)
                    versions.add(string(link, name))
                    entry += next_aux
                if next_ == 0:
                    break
                at += next_
    glibc = sorted(
        (tuple(int(p) for p in m.group(1).split(".")) for v in versions
         if (m := re.fullmatch(r"GLIBC_(\d+(?:\.\d+)*)", v))),
        reverse=True,
    )
    return {
        "machine": e_machine,
        "interpreter": interpreter,
        "needed": needed,
        "glibc": glibc[0] if glibc else None,
    }


def check(data: bytes, arch: str, max_glibc: tuple) -> dict:
    """`inspect`, then every reason the binary would not start on a Lambda of `arch`."""
    found = inspect(data)
    names = {v: k for k, v in MACHINES.items()}
    if found["machine"] != MACHINES[arch]:
        raise NotLoadable(f"built for {names.get(found['machine'], 'machine ' + str(found['machine']))}, not {arch}")
    if found["interpreter"] not in (None, INTERPRETERS[arch]):
        raise NotLoadable(f"asks for the loader {found['interpreter']}, not {INTERPRETERS[arch]}")
    extra = [lib for lib in found["needed"] if lib not in ALLOWED_LIBS]
    if extra:
        raise NotLoadable(f"needs {', '.join(extra)}, which Lambda images do not have")
    if found["glibc"] and found["glibc"] > max_glibc:
        raise NotLoadable(
            f"needs GLIBC_{'.'.join(map(str, found['glibc']))}, above {'.'.join(map(str, max_glibc))}")
    return found


CLIENTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "clients")
# (path in the zip, path under clients/)
CLIENT_FILES = [
    ("python/lambda_secrets_cache.py", "python/lambda_secrets_cache.py"),
] + [
    (f"nodejs/node_modules/lambda-secrets-cache/{name}", f"node/{name}")
    for name in ("package.json", "index.cjs", "index.mjs", "index.d.ts")
]


def entry(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
    store = os.environ.get("LAYER_COMPRESSION") == "store"
    info.compress_type = zipfile.ZIP_STORED if store else zipfile.ZIP_DEFLATED
    # Unix mode in the high 16 bits; 0o100000 marks a regular file.
    info.external_attr = (stat.S_IFREG | mode) << 16
    info.create_system = 3  # Unix, so unzip honours the mode
    return info


def build(binary: str, out: str) -> None:
    with open(binary, "rb") as f:
        data = f.read()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with zipfile.ZipFile(out, "w") as z:
        z.writestr(entry("extensions/lambda-secrets-cache", 0o755), data, compresslevel=9)
        for name, source in CLIENT_FILES:
            with open(os.path.join(CLIENTS, source), "rb") as f:
                z.writestr(entry(name, 0o644), f.read(), compresslevel=9)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", required=True, choices=sorted(MACHINES))
    parser.add_argument("--max-glibc", default="2.26", help="highest GLIBC_x.y symbol allowed (default 2.26)")
    parser.add_argument("binary")
    parser.add_argument("out")
    a = parser.parse_args()
    max_glibc = tuple(int(p) for p in a.max_glibc.split("."))
    with open(a.binary, "rb") as f:
        data = f.read()
    try:
        found = check(data, a.arch, max_glibc)
    except (NotLoadable, struct.error, IndexError, ValueError) as e:
        print(f"{a.binary}: refused for the {a.arch} layer: {e}", file=sys.stderr)
        return 1
    build(a.binary, a.out)
    glibc = "GLIBC_" + ".".join(map(str, found["glibc"])) if found["glibc"] else "no glibc symbols"
    print(f"{a.out}: extensions/lambda-secrets-cache ({len(data)} bytes, mode 0755), {a.arch}, "
          f"highest {glibc} (at most {a.max_glibc}), needs {', '.join(found['needed']) or 'nothing'}; "
          f"clients: {', '.join(name for name, _ in CLIENT_FILES)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
