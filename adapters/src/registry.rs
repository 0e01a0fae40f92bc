//! The registry: an explicit list of adapters, asked in order which one owns a root element.

use std::sync::Arc;

use crate::{Adapter, MessageType, RootName};

/// Why adapters could not be registered together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("two adapters are named {0}")]
    DuplicateName(String),
}

/// All adapters a node or a `validate` run knows, in registration order.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    adapters: Vec<Arc<dyn Adapter>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an adapter; names must be unique because config, logs and metrics refer to them.
    pub fn register(&mut self, adapter: Arc<dyn Adapter>) -> Result<(), RegistryError> {
        if self.adapters.iter().any(|a| a.name() == adapter.name()) {
            return Err(RegistryError::DuplicateName(adapter.name().to_owned()));
        }
        self.adapters.push(adapter);
        Ok(())
    }

    /// The first adapter that claims this root element, with the message type it assigns.
    pub fn identify(&self, root: &RootName) -> Option<(Arc<dyn Adapter>, MessageType)> {
        self.adapters
            .iter()
            .find_map(|a| a.identify(root).map(|t| (a.clone(), t)))
    }

    /// Looks an adapter up by name.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Adapter>> {
        self.adapters.iter().find(|a| a.name() == name).cloned()
    }

    pub fn adapters(&self) -> impl Iterator<Item = &Arc<dyn Adapter>> {
        self.adapters.iter()
    }
}
