//! certbind's proxy-wasm filter: thin glue between the proxy and the decision logic in
//! `certbind-shared`. The request path is in [`http`], configuration in [`root`], and every
//! call into the proxy goes through the small [`host::Host`] trait.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod config;
pub mod host;
pub mod http;
pub mod metrics;
pub mod root;
pub mod snapshot;

#[cfg(target_arch = "wasm32")]
mod entry {
    use proxy_wasm::types::LogLevel;

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Info);
        // A panic aborts the VM and the proxy then fails requests closed; log why first, at
        // the level operators alert on.
        std::panic::set_hook(Box::new(|info| {
            let _ = proxy_wasm::hostcalls::log(LogLevel::Critical, &format!("certbind: panic: {info}"));
        }));
        proxy_wasm::set_root_context(|_| Box::new(crate::root::CertbindRoot::new()));
    }}
}
