//! Operations: what an operator sees and the process's bounds. [`admin`] serves [`status`] and
//! [`metrics`] over HTTP, [`limits`] bounds connections, [`systemd`] talks to the service manager and
//! [`privdrop`] leaves root after binding, [`transparent`] checks what transparent backends need.

pub(crate) mod admin;
pub(crate) mod limits;
pub(crate) mod metrics;
pub mod privdrop;
pub mod status;
pub mod systemd;
pub mod transparent;
