//! Where settings come from (the `Env` trait: the process environment, or a map in tests) and
//! the collector that reads them: each reader parses one variable, and a bad value becomes a
//! problem named after its variable instead of stopping the load.

use std::collections::HashMap;
use std::time::Duration;

use super::duration;
use super::problem::{Origin, Problem};
use crate::escape::quoted;

/// Where configuration comes from. Tests pass a map; the binary passes the process environment.
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for HashMap<&str, &str> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).map(|v| v.to_string())
    }
}

/// Reads variables and collects every problem found.
pub(super) struct Collector<'e> {
    pub(super) env: &'e dyn Env,
    pub(super) problems: Vec<Problem>,
}

impl<'e> Collector<'e> {
    pub(super) fn new(env: &'e dyn Env) -> Collector<'e> {
        Collector { env, problems: Vec::new() }
    }

    pub(super) fn bad(&mut self, name: &'static str, message: String) {
        self.problems.push(Problem {
            origin: Origin::Env(name),
            message,
        });
    }

    /// Whether `name` is in the environment at all, blank or not.
    pub(super) fn present(&self, name: &str) -> bool {
        self.env.get(name).is_some()
    }

    /// A set, non-blank variable.
    pub(super) fn var(&self, name: &str) -> Option<String> {
        self.env.get(name).filter(|v| !v.trim().is_empty()).map(|v| v.trim().to_string())
    }

    pub(super) fn integer(&mut self, name: &'static str, min: u64, max: u64) -> Option<u64> {
        let raw = self.var(name)?;
        match raw.parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => Some(v),
            Ok(v) => {
                self.bad(name, format!("{v} is out of range ({min}–{max})"));
                None
            }
            Err(_) => {
                self.bad(name, format!("{} is not a whole number ({min}–{max})", quoted(&raw)));
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, name: &'static str) -> Option<bool> {
        let raw = self.var(name)?;
        match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(true),
            "false" | "0" | "no" => Some(false),
            _ => {
                self.bad(name, format!("{} is not true or false", quoted(&raw)));
                None
            }
        }
    }

    pub(super) fn duration(&mut self, name: &'static str, max: Duration) -> Option<Duration> {
        let raw = self.var(name)?;
        match duration::parse(&raw) {
            Ok(d) if d <= max => Some(d),
            Ok(d) => {
                self.bad(
                    name,
                    format!("{} is above the maximum of {}", duration::display(d), duration::display(max)),
                );
                None
            }
            Err(e) => {
                self.bad(name, e);
                None
            }
        }
    }

    pub(super) fn fraction(&mut self, name: &'static str) -> Option<f64> {
        let raw = self.var(name)?;
        match raw.parse::<f64>() {
            Ok(v) if v > 0.0 && v <= 1.0 => Some(v),
            _ => {
                self.bad(name, format!("{} is not a fraction in (0, 1] such as 0.8", quoted(&raw)));
                None
            }
        }
    }

    /// One of `allowed` (compared without case); a problem listing them otherwise.
    pub(super) fn choice(&mut self, name: &'static str, allowed: &[&'static str]) -> Option<&'static str> {
        let raw = self.var(name)?;
        let found = allowed.iter().find(|a| a.eq_ignore_ascii_case(&raw)).copied();
        if found.is_none() {
            self.bad(name, format!("{} is not one of {}", quoted(&raw), allowed.join(", ")));
        }
        found
    }

    /// Timeouts in milliseconds; 0 means `default`, never "wait forever".
    pub(super) fn timeout(&mut self, name: &'static str, default: Duration) -> Duration {
        match self.integer(name, 0, 300_000) {
            None | Some(0) => default,
            Some(ms) => Duration::from_millis(ms),
        }
    }
}
