//! A minimal client for AWS JSON-protocol services (Secrets Manager, SSM) against moto, for
//! seeding test data. moto does not check signatures; it reads the service and region from the
//! credential scope of the Authorization header.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::harness::client;

#[derive(Clone)]
pub struct AwsJson {
    addr: SocketAddr,
    region: String,
}

impl AwsJson {
    pub fn new(addr: SocketAddr) -> AwsJson {
        AwsJson {
            addr,
            region: "us-east-1".into(),
        }
    }

    /// Calls `service` (`secretsmanager` or `ssm`) operation `op` with a JSON body.
    pub async fn call(&self, service: &str, op: &str, body: Value) -> anyhow::Result<Value> {
        let (status, value) = self.call_status(service, op, body).await?;
        if status != 200 {
            bail!("{service}.{op} failed with {status}: {value}");
        }
        Ok(value)
    }

    /// As `call`, returning the status and body whatever the status.
    pub async fn call_status(&self, service: &str, op: &str, body: Value) -> anyhow::Result<(u16, Value)> {
        let target = match service {
            "secretsmanager" => format!("secretsmanager.{op}"),
            "ssm" => format!("AmazonSSM.{op}"),
            other => bail!("unsupported service {other}"),
        };
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=testing/20260101/{}/{service}/aws4_request, SignedHeaders=host;x-amz-target, Signature=0",
            self.region
        );
        let headers = [
            ("x-amz-target", target.as_str()),
            ("content-type", "application/x-amz-json-1.1"),
            ("authorization", auth.as_str()),
        ];
        let response = client::request(self.addr, "POST", "/", &headers, body.to_string().into_bytes()).await?;
        let value: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        Ok((response.status, value))
    }

    pub async fn create_secret(&self, name: &str, value: &str) -> anyhow::Result<Value> {
        self.call(
            "secretsmanager",
            "CreateSecret",
            serde_json::json!({"Name": name, "SecretString": value}),
        )
        .await
    }

    pub async fn create_binary_secret(&self, name: &str, bytes_base64: &str) -> anyhow::Result<Value> {
        self.call(
            "secretsmanager",
            "CreateSecret",
            serde_json::json!({"Name": name, "SecretBinary": bytes_base64}),
        )
        .await
    }

    /// A new AWSCURRENT version; the old one becomes AWSPREVIOUS.
    pub async fn put_secret_value(&self, name: &str, value: &str) -> anyhow::Result<Value> {
        self.call(
            "secretsmanager",
            "PutSecretValue",
            serde_json::json!({"SecretId": name, "SecretString": value}),
        )
        .await
    }

    pub async fn put_parameter(&self, name: &str, value: &str, kind: &str) -> anyhow::Result<Value> {
        self.call(
            "ssm",
            "PutParameter",
            serde_json::json!({"Name": name, "Value": value, "Type": kind, "Overwrite": true}),
        )
        .await
    }

    pub async fn label_parameter_version(&self, name: &str, version: u64, label: &str) -> anyhow::Result<Value> {
        self.call(
            "ssm",
            "LabelParameterVersion",
            serde_json::json!({"Name": name, "ParameterVersion": version, "Labels": [label]}),
        )
        .await
        .context("LabelParameterVersion")
    }
}
