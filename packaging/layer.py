#!/usr/bin/env python3
"""Builds the Lambda layer zip: extensions/lambda-secrets-cache (mode 0755), which Lambda
extracts to /opt/extensions/lambda-secrets-cache and starts as an external extension.

usage: layer.py BINARY OUT.zip
(LAYER_COMPRESSION=store skips compression, for quick layout checks on a debug build.)
"""
import os
import stat
import sys
import zipfile


def build(binary: str, out: str) -> None:
    info = zipfile.ZipInfo("extensions/lambda-secrets-cache", date_time=(2026, 1, 1, 0, 0, 0))
    store = os.environ.get("LAYER_COMPRESSION") == "store"
    info.compress_type = zipfile.ZIP_STORED if store else zipfile.ZIP_DEFLATED
    # Unix mode in the high 16 bits; 0o100000 marks a regular file.
    info.external_attr = (stat.S_IFREG | 0o755) << 16
    info.create_system = 3  # Unix, so unzip honours the mode
    with open(binary, "rb") as f:
        data = f.read()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with zipfile.ZipFile(out, "w") as z:
        z.writestr(info, data, compresslevel=9)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    build(sys.argv[1], sys.argv[2])
    print(f"{sys.argv[2]}: extensions/lambda-secrets-cache ({os.path.getsize(sys.argv[1])} bytes, mode 0755)")
