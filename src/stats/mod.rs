//! Private federated statistics (docs/statistics.md): tables counted
//! across the federation without any member revealing its own counts.
//!
//! Each member turns each of its cases into one measurement per table
//! (`tables`, with the one-victim rule; `victim` for the tables about
//! the people), splits it into two secret shares
//! with a Prio3 VDAF (`vdaf`, libprio-rs) for the plan's two aggregators
//! (`plan`, carried by the signed directory), and the aggregators verify,
//! sum and add noise; what is published drops cells under the plan's
//! minimum (`publish`). This module is pure: the store keeps reports and
//! releases, and the exchange carries them.

pub mod plan;
pub mod publish;
pub mod tables;
pub mod vdaf;
pub mod victim;
