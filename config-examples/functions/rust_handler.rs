//! Reading a secret through lambda-secrets-cache from a Rust function (lambda_runtime + reqwest).
//!
//! Cargo.toml: lambda_runtime = "1", reqwest = { version = "0.12", default-features = false,
//! features = ["json"] }, serde_json = "1", tokio = { version = "1", features = ["macros"] }

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

async fn get_secret(client: &reqwest::Client, secret_id: &str) -> Result<String, Error> {
    let port = std::env::var("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT").unwrap_or_else(|_| "2773".into());
    let token = std::env::var("AWS_SESSION_TOKEN")?;
    let mut request = client
        .get(format!("http://127.0.0.1:{port}/secretsmanager/get"))
        .query(&[("secretId", secret_id)])
        .header("X-Aws-Parameters-Secrets-Token", token);
    if let Ok(trace) = std::env::var("_X_AMZN_TRACE_ID") {
        request = request.header("X-Amzn-Trace-Id", trace);
    }
    let body: Value = request.send().await?.error_for_status()?.json().await?;
    Ok(body["SecretString"].as_str().unwrap_or_default().to_string())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let client = reqwest::Client::new();
    run(service_fn(|_event: LambdaEvent<Value>| {
        let client = client.clone();
        async move {
            let credentials = get_secret(&client, "prod/db/credentials").await?;
            Ok::<_, Error>(serde_json::json!({ "length": credentials.len() }))
        }
    }))
    .await
}
