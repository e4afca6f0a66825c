//! What every SDK call's answer passes through: a cap on its size, and the count of throttled
//! answers by operation (each attempt, retries included), with one warning per operation that
//! names the quota AWS enforced.

use std::sync::Arc;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeDeserializationInterceptorContextMut, BeforeDeserializationInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

use super::answer;
use super::error::is_throttling_code;
use crate::counters::Counters;
use crate::key::Service;

/// Caps every answer's body at `answer::MAX_ANSWER` before the SDK reads it into memory: an
/// endpoint that streams megabytes costs one rejected call, not the function's memory.
#[derive(Debug)]
pub(super) struct CapAnswers;

impl Intercept for CapAnswers {
    fn name(&self) -> &'static str {
        "CapAnswers"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let body = context.response_mut().body_mut();
        let taken = std::mem::replace(body, aws_smithy_types::body::SdkBody::taken());
        *body = aws_smithy_types::body::SdkBody::from_body_1_x(http_body_util::Limited::new(taken, answer::MAX_ANSWER));
        Ok(())
    }
}

/// Counts throttled answers (`x-amzn-ErrorType` a throttling code) by operation.
pub(super) struct CountThrottles {
    service: Service,
    counters: Arc<Counters>,
}

impl CountThrottles {
    pub(super) fn new(service: Service, counters: Arc<Counters>) -> CountThrottles {
        CountThrottles { service, counters }
    }
}

impl std::fmt::Debug for CountThrottles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountThrottles").field("service", &self.service).finish()
    }
}

impl Intercept for CountThrottles {
    fn name(&self) -> &'static str {
        "CountThrottles"
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let response = context.response();
        if response.status().is_success() {
            return Ok(());
        }
        let code = response.headers().get("x-amzn-errortype").unwrap_or("");
        if !is_throttling_code(code.split(':').next().unwrap_or("")) {
            return Ok(());
        }
        let operation = cfg.load::<Metadata>().map_or("unknown", |m| m.name());
        if self.counters.throttled(self.service, operation) == 1 {
            tracing::warn!(operation, "{}", quota(operation));
        }
        Ok(())
    }
}

/// What a throttled operation says about the account's quota, and what to do about it.
fn quota(operation: &str) -> &'static str {
    match operation {
        "BatchGetSecretValue" => {
            "AWS throttled BatchGetSecretValue: 100 calls a second per account and Region, shared by every environment, not adjustable; its ids go to GetSecretValue (10 000 a second) instead"
        }
        "GetSecretValue" => {
            "AWS throttled GetSecretValue: 10 000 calls a second per account and Region, shared by every environment (adjustable in Service Quotas); longer TTLs and the prefetch spend less of it"
        }
        _ => {
            "AWS throttled Parameter Store: at standard throughput GetParameter, GetParameters and GetParametersByPath share 40 calls a second per account and Region; higher throughput raises it (10 000 a second for GetParameter and GetParameters, 100 for GetParametersByPath); longer TTLs spend less of it"
        }
    }
}
