//! How often each pmmux detector matches noise: seeded random bytes, and the client bytes captured
//! for every other plugin's tests. A detector that matches noise steals traffic from the backends
//! after it and hands strangers to its server; `tests/<plugin>.rs` holds each one to a bound and
//! prints its rates (`cargo test -p pmmux-noise -- --nocapture | grep '^noise'`).
//!
//! [`captures`] finds and labels the captured bytes, [`detectors`] turns a plugin's hooks into
//! plain functions, [`rates`] measures, and [`check`] asserts and reports.

pub mod captures;
pub mod check;
pub mod detectors;
pub mod rates;

pub use check::{assert_noise, Bound, Expect};
pub use detectors::{build, Detector, Verdict};
