//! A user's handler as Lambda names it (`path/to/app.handler`), the runtime that runs it (AWS's
//! `awslambdaric` for Python, `aws-lambda-ric` for Node.js), and the layers on its paths.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Runtime {
    Python,
    Node,
}

impl Runtime {
    /// File extensions a handler module may have, in the order they are tried.
    fn extensions(self) -> &'static [&'static str] {
        match self {
            Runtime::Python => &["py"],
            Runtime::Node => &["mjs", "js", "cjs"],
        }
    }

    fn of_file(path: &Path) -> Option<Runtime> {
        let ext = path.extension()?.to_str()?;
        [Runtime::Python, Runtime::Node].into_iter().find(|r| r.extensions().contains(&ext))
    }

    /// `AWS_EXECUTION_ENV` as Lambda sets it for this runtime (the versions installed here).
    fn execution_env(self) -> &'static str {
        match self {
            Runtime::Python => "AWS_Lambda_python3.11",
            Runtime::Node => "AWS_Lambda_nodejs20.x",
        }
    }
}

/// A handler as Lambda names one (`module.function`), with the directory it lives in.
#[derive(Debug, Clone)]
pub struct Handler {
    pub runtime: Runtime,
    /// `LAMBDA_TASK_ROOT`: the directory of the handler's file.
    pub task_root: PathBuf,
    /// `_HANDLER`: `module.function`.
    pub name: String,
    /// Layers, each a directory laid out as Lambda extracts one to `/opt`: their `python/` and
    /// `nodejs/node_modules/` are on the runtime's paths, in order.
    pub layers: Vec<PathBuf>,
}

impl Handler {
    /// `path/to/module.function` (or `path/to/module.py.function`): the file is `module` with
    /// the runtime's extension, the function is what follows the last dot. The runtime comes
    /// from the file's extension unless given.
    pub fn parse(spec: &str, runtime: Option<Runtime>) -> anyhow::Result<Handler> {
        let Some((file, function)) = spec.rsplit_once('.').filter(|(f, func)| !f.is_empty() && !func.is_empty()) else {
            bail!("--handler {spec:?}: expected FILE.function, like functions/app.handler");
        };
        if function.contains('/') {
            bail!("--handler {spec:?}: expected FILE.function, like functions/app.handler");
        }
        let given = PathBuf::from(file);
        let candidates: Vec<PathBuf> = if Runtime::of_file(&given).is_some() {
            vec![given.clone()]
        } else {
            let runtimes = runtime.map_or_else(|| vec![Runtime::Python, Runtime::Node], |r| vec![r]);
            runtimes
                .iter()
                .flat_map(|r| r.extensions().iter().map(|ext| given.with_extension(ext)))
                .collect()
        };
        let Some(path) = candidates.into_iter().find(|p| p.is_file()) else {
            bail!("--handler {spec:?}: no handler file {file}(.py|.mjs|.js|.cjs)");
        };
        let detected = Runtime::of_file(&path).context("a handler file has a known extension")?;
        let runtime = runtime.unwrap_or(detected);
        if runtime != detected {
            bail!("--handler {spec:?}: {} is not a {runtime:?} file", path.display());
        }
        let task_root = std::fs::canonicalize(path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))?;
        let module = path
            .file_stem()
            .and_then(|s| s.to_str())
            .context("the handler file name is UTF-8")?;
        Ok(Handler {
            runtime,
            task_root,
            name: format!("{module}.{function}"),
            layers: Vec::new(),
        })
    }

    /// The runtime interface client's command line.
    pub(crate) fn command(&self) -> anyhow::Result<std::process::Command> {
        let root = crate::workspace_root();
        let mut cmd = match self.runtime {
            Runtime::Python => {
                let python = root.join(".venv/bin/python");
                if !python.exists() {
                    bail!("{} not found: `make venv` installs awslambdaric", python.display());
                }
                let mut cmd = std::process::Command::new(python);
                cmd.args(["-m", "awslambdaric", &self.name]);
                cmd
            }
            Runtime::Node => {
                let ric = node_ric();
                if !ric.exists() {
                    bail!("{} not found: `make node-ric` installs aws-lambda-ric", ric.display());
                }
                let mut cmd = std::process::Command::new("node");
                cmd.arg(ric).arg(&self.name);
                cmd
            }
        };
        cmd.current_dir(&self.task_root);
        Ok(cmd)
    }

    /// Variables Lambda gives the runtime but not extensions (ARCHITECTURE.md, "The Lambda platform").
    pub(crate) fn runtime_env(&self) -> Vec<(String, String)> {
        let root = self.task_root.to_string_lossy().into_owned();
        let mut env = vec![
            ("_HANDLER".to_string(), self.name.clone()),
            ("LAMBDA_TASK_ROOT".into(), root.clone()),
            ("LAMBDA_RUNTIME_DIR".into(), root.clone()),
            ("AWS_EXECUTION_ENV".into(), self.runtime.execution_env().into()),
            ("AWS_LAMBDA_LOG_GROUP_NAME".into(), "/aws/lambda/local".into()),
            ("AWS_LAMBDA_LOG_STREAM_NAME".into(), "local".into()),
        ];
        let under = |dir: &'static str| self.layers.iter().map(move |l| l.join(dir).to_string_lossy().into_owned());
        match self.runtime {
            // Lambda's Python runtimes: the task root, then each layer's `python/`.
            Runtime::Python => {
                let path: Vec<String> = std::iter::once(root).chain(under("python")).collect();
                env.push(("PYTHONPATH".into(), path.join(":")));
                env.push(("PYTHONUNBUFFERED".into(), "1".into()));
            }
            // Lambda's Node.js runtimes: `NODE_PATH` holds each layer's `nodejs/node_modules`.
            Runtime::Node => {
                let path: Vec<String> = under("nodejs/node_modules").collect();
                if !path.is_empty() {
                    env.push(("NODE_PATH".into(), path.join(":")));
                }
            }
        }
        env
    }
}

/// Where AWS's Node.js runtime interface client is installed (`make node-ric`).
pub fn node_ric() -> PathBuf {
    crate::workspace_root().join("devtools/runtimes/node/node_modules/aws-lambda-ric/bin/index.mjs")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handler_specs_resolve_to_files() {
        let examples = crate::workspace_root().join("config-examples/functions");
        let py = Handler::parse(&format!("{}/python_handler.handler", examples.display()), None).unwrap();
        assert_eq!((py.runtime, py.name.as_str()), (Runtime::Python, "python_handler.handler"));
        assert_eq!(py.task_root, examples.canonicalize().unwrap());
        let explicit = Handler::parse(&format!("{}/python_handler.py.handler", examples.display()), None).unwrap();
        assert_eq!(explicit.name, "python_handler.handler");
        let node = Handler::parse(&format!("{}/node_handler.handler", examples.display()), None).unwrap();
        assert_eq!((node.runtime, node.name.as_str()), (Runtime::Node, "node_handler.handler"));
        for bad in ["nodot", "x.", ".handler", "missing/file.handler", "a.b/c"] {
            assert!(Handler::parse(bad, None).is_err(), "{bad}");
        }
        let wrong = Handler::parse(&format!("{}/node_handler.handler", examples.display()), Some(Runtime::Python));
        assert!(wrong.is_err());
    }
}
