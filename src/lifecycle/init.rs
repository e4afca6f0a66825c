//! Init failures: the platform must hear why Init failed (`init/error`) before we exit, and
//! that needs a registration, so one is made first when there is none yet.

use crate::lambda::ExtensionsApi;

/// Registers if `id` is `None` (an init error needs an identifier), then posts `init/error`
/// with `error_type` and `message`. Failures to report are logged; the caller exits anyway.
pub async fn report_init_failure(api: &ExtensionsApi, name: &str, id: Option<&str>, error_type: &'static str, message: &str) {
    tracing::error!(error_type, "{message}");
    let id = match id {
        Some(id) => id.to_string(),
        None => match api.register(name, &["INVOKE", "SHUTDOWN"]).await {
            Ok(r) => r.id,
            Err(e) => {
                tracing::error!(error = %e, "cannot register to report the init error");
                return;
            }
        },
    };
    if let Err(e) = api.init_error(&id, error_type, message).await {
        tracing::error!(error = %e, "cannot report the init error");
    }
}
