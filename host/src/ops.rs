//! Operations: what an operator sees and the process's bounds. [`admin`] serves [`status`] and
//! [`metrics`] over HTTP, [`limits`] bounds connections, [`systemd`] talks to the service manager and
//! [`privdrop`] leaves root after binding, [`transparent`] checks what transparent backends need;
//! [`logging`] writes the process log through a [`batch_writer`], off the connections' path, as
//! the [`access_log`] does.

pub(crate) mod access_log;
pub(crate) mod admin;
pub(crate) mod batch_writer;
pub(crate) mod limits;
pub mod logging;
pub(crate) mod metrics;
pub mod privdrop;
pub mod status;
pub mod systemd;
pub mod transparent;
