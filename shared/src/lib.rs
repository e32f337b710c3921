//! The bulk user management domain: model, validation, job state machine, processing, ports,
//! the route table shared by every host, and the adapters behind cargo features.

pub mod adapters;
pub mod api;
pub mod auth;
pub mod csvfile;
pub mod deadline;
pub mod delivery;
pub mod jobfile;
pub mod model;
pub mod observe;
pub mod passwords;
pub mod ports;
pub mod processing;
pub mod service;
pub mod validation;

#[cfg(feature = "lambda")]
pub mod lambda;
#[cfg(feature = "embedded")]
pub mod local;
