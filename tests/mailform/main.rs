//! The one integration-test binary: drives the real `mailform` binary, and
//! (in `peers`) the real OAuth and SMTP servers the harness starts.

mod apply;
mod cli;
mod corpus;
mod first_week;
mod forwarding;
mod front_door;
mod imap;
mod live;
mod oauth;
mod org_grants;
mod peers;
mod postgres;
mod properties;
mod reconcile;
mod schemas;
mod smtp;
mod state_attacks;
mod support;
mod trust;
