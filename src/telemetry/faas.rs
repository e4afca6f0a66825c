//! `faas.*` metrics from the platform's Telemetry API events: what counts as an invocation,
//! an error, a timeout, a cold start, and the durations.

use super::names;
use crate::lambda::telemetry_api::PlatformEvent;

/// `faas.*` from platform events: `start` counts an invocation; a `runtimeDone` that is not
/// `success` an error (or a timeout); `initReport` gives the init duration; `report` the
/// invocation duration, and a cold start when it carries `initDurationMs` (as Lambda's REPORT
/// line does).
pub fn record(event: &PlatformEvent) {
    use metrics::{counter, histogram};
    match event {
        PlatformEvent::Start { .. } => counter!(names::FAAS_INVOCATIONS).increment(1),
        PlatformEvent::RuntimeDone { status, .. } => match status.as_str() {
            "success" => {}
            "timeout" => counter!(names::FAAS_TIMEOUTS).increment(1),
            _ => counter!(names::FAAS_ERRORS).increment(1),
        },
        PlatformEvent::InitReport { duration_ms: Some(ms), .. } => histogram!(names::FAAS_INIT_DURATION).record(ms / 1000.0),
        PlatformEvent::Report {
            duration_ms,
            init_duration_ms,
            ..
        } => {
            if let Some(ms) = duration_ms {
                histogram!(names::FAAS_INVOKE_DURATION).record(ms / 1000.0);
            }
            if init_duration_ms.is_some() {
                counter!(names::FAAS_COLDSTARTS).increment(1);
            }
        }
        _ => {}
    }
}
