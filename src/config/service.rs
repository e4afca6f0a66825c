//! Which AWS service an item comes from, and the per-service pair every setting, counter and
//! budget comes in.

/// Which AWS service an item comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    SecretsManager,
    Ssm,
}

impl Service {
    pub const ALL: [Service; 2] = [Service::SecretsManager, Service::Ssm];

    /// The value of the `source` metric attribute and of `/status`'s `source` fields.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::SecretsManager => "secretsmanager",
            Service::Ssm => "ssm",
        }
    }
}

/// One value for each service: Secrets Manager, Parameter Store. Every per-service pair in the
/// code (settings, counters, budgets, entry counts) is one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ByService<T> {
    pub secrets: T,
    pub ssm: T,
}

impl<T> ByService<T> {
    /// A value for each service, made by `make`.
    pub fn from_fn(mut make: impl FnMut(Service) -> T) -> ByService<T> {
        ByService {
            secrets: make(Service::SecretsManager),
            ssm: make(Service::Ssm),
        }
    }

    pub fn get(&self, service: Service) -> &T {
        match service {
            Service::SecretsManager => &self.secrets,
            Service::Ssm => &self.ssm,
        }
    }

    pub fn get_mut(&mut self, service: Service) -> &mut T {
        match service {
            Service::SecretsManager => &mut self.secrets,
            Service::Ssm => &mut self.ssm,
        }
    }
}
