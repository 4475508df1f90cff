//! End-to-end tests: one binary, one module per feature. Each test starts a real node on
//! 127.0.0.1 port 0 and speaks real HTTP/1.1 to it.

mod admin;
mod admission;
mod binary;
mod cli;
mod common;
mod config;
mod dispatch;
mod hostile;
mod http;
mod https_subrequests;
mod incremental;
mod js;
mod js_platform;
mod kv;
mod modules;
mod namespaces;
mod openapi;
mod responses;
mod serve;
mod subrequests;
mod tiers;
mod tls;
