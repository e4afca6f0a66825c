//! Parameter Store through the SDK: GetParameter, GetParameters, GetParametersByPath.

use super::{Aws, FetchError, Fetched, PARAMETERS_BATCH, answer};
use crate::key::{Key, SelectorKind, Service};

impl Aws {
    pub(super) async fn get_parameter(&self, key: &Key) -> Result<Fetched, FetchError> {
        let clients = self.clients(&key.role).await?;
        let req = clients.ssm.get_parameter().name(key.ssm_name()).with_decryption(key.decrypt);
        self.call(Service::Ssm, "GetParameter", req.send(), |out| {
            let mut p = out
                .parameter
                .ok_or_else(|| FetchError::Invalid("GetParameter answered without a parameter".into()))?;
            // AWS echoes the selector (`:3`, `:label`); some stand-ins (moto) do not. Keep the shape.
            if p.selector.as_deref().is_none_or(str::is_empty) && matches!(key.kind, SelectorKind::Version | SelectorKind::Label) {
                p.selector = Some(format!(":{}", key.selector));
            }
            answer::parameter(answer::Wanted::Key(key), p)
        })
        .await
    }

    pub(super) async fn batch_parameters(&self, keys: &[Key]) -> Vec<Result<Fetched, FetchError>> {
        let mut results: Vec<Option<Result<Fetched, FetchError>>> = vec![None; keys.len()];
        let clients = match self.clients(&keys[0].role).await {
            Ok(c) => c,
            Err(e) => return keys.iter().map(|_| Err(e.clone())).collect(),
        };
        // GetParameters takes one withDecryption flag: one call per flag.
        for decrypt in [false, true] {
            let group: Vec<usize> = (0..keys.len()).filter(|&i| keys[i].decrypt == decrypt).collect();
            if group.is_empty() {
                continue;
            }
            let names: Vec<String> = group.iter().map(|&i| keys[i].ssm_name()).collect();
            let req = clients.ssm.get_parameters().set_names(Some(names.clone())).with_decryption(decrypt);
            let out = match self.call(Service::Ssm, "GetParameters", req.send(), Ok).await {
                Ok(out) => out,
                Err(e) if !e.is_transient() => continue,
                Err(e) => {
                    for &i in &group {
                        results[i] = Some(Err(e.clone()));
                    }
                    continue;
                }
            };
            for p in out.parameters.unwrap_or_default() {
                let full = format!("{}{}", p.name().unwrap_or(""), p.selector().unwrap_or(""));
                let arn = p.arn().map(|a| format!("{a}{}", p.selector().unwrap_or("")));
                if let Some(&i) = group
                    .iter()
                    .zip(&names)
                    .find(|(_, n)| **n == full || Some(n.as_str()) == arn.as_deref())
                    .map(|(i, _)| i)
                {
                    let result = answer::parameter(answer::Wanted::Key(&keys[i]), p);
                    if let Err(FetchError::Invalid(why)) = &result {
                        tracing::warn!(method = "GetParameters", why = %why, "upstream answer rejected");
                    }
                    results[i] = Some(result);
                }
            }
            for invalid in out.invalid_parameters.unwrap_or_default() {
                if let Some(&i) = group.iter().zip(&names).find(|(_, n)| **n == invalid).map(|(i, _)| i) {
                    results[i] = Some(Err(FetchError::item(
                        "ParameterNotFound",
                        &format!("parameter {invalid} not found"),
                    )));
                }
            }
        }
        self.fill_missing(keys, results).await
    }

    /// GetParametersByPath, at most `limit` parameters (`super::listing`). One parameter that
    /// is not a valid answer under the path fails the whole path: nothing from it is installed.
    pub(super) async fn parameters_by_path(&self, path: &str, decrypt: bool, role: &str, limit: usize) -> Result<Vec<Fetched>, FetchError> {
        let clients = self.clients(role).await?;
        super::listing("GetParametersByPath", limit, PARAMETERS_BATCH, |token| {
            let req = clients
                .ssm
                .get_parameters_by_path()
                .path(path)
                .recursive(true)
                .with_decryption(decrypt)
                .set_next_token(token);
            self.call(Service::Ssm, "GetParametersByPath", req.send(), |page| {
                let items = page
                    .parameters
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| answer::parameter(answer::Wanted::Under(path), p))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((items, page.next_token))
            })
        })
        .await
    }
}
