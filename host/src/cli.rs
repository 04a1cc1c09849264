//! Command-line flags and their translation into [`Options`] and a config
//! source — a pure function of the flags (tests call it without touching
//! the process environment).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::Parser;
use mesh_common::ca::{CertBundle, certs_from_pem, validity_of};
use mesh_common::tls::RotatingCert;
use mesh_common::xds::transport::Endpoint;

use crate::config::ConfigSource;
use crate::config::file::FileSource;
use crate::config::push::PushSource;
use crate::telemetry::DEFAULT_CLUSTER_ID;
use crate::waypoint::{AccessLogTarget, Options};

/// Environment variable naming the config file (same as `--config`).
pub const ENV_CONFIG: &str = "WAYPOINT_CONFIG";

/// The waypoint: a per-service L7 proxy whose policy runs as WebAssembly
/// filters.
#[derive(Debug, Parser)]
#[command(name = "waypoint", version)]
pub struct Args {
    /// WaypointConfig file (YAML or JSON), reloaded when it changes.
    #[arg(long, env = ENV_CONFIG, conflicts_with = "xds_address")]
    pub config: Option<PathBuf>,
    /// Operator push endpoint instead of a file: `host:port` or
    /// `http://host:port` (cleartext HTTP/2), or `https://host:port` (TLS,
    /// verified with --xds-root-cert).
    #[arg(long)]
    pub xds_address: Option<String>,
    /// Roots (PEM) that verify an `https://` operator endpoint.
    #[arg(long, requires = "xds_address")]
    pub xds_root_cert: Option<PathBuf>,
    /// Waypoint (Gateway) name, for the push subscription.
    #[arg(long, requires = "xds_address")]
    pub name: Option<String>,
    /// Waypoint namespace, for the push subscription.
    #[arg(long, requires = "xds_address")]
    pub namespace: Option<String>,
    /// Instance name reported to the operator.
    #[arg(long)]
    pub node: Option<String>,
    /// HBONE listener, or `off`.
    #[arg(long, default_value = "0.0.0.0:15008")]
    pub hbone_addr: String,
    /// Plain HTTP listener, or `off`.
    #[arg(long, default_value = "0.0.0.0:15080")]
    pub http_addr: String,
    /// Admin listener, or `off`.
    #[arg(long, default_value = "127.0.0.1:15000")]
    pub admin_addr: String,
    /// Prometheus listener, or `off`.
    #[arg(long, default_value = "0.0.0.0:15020")]
    pub metrics_addr: String,
    /// Readiness listener, or `off`.
    #[arg(long, default_value = "0.0.0.0:15021")]
    pub ready_addr: String,
    /// Certificate chain (PEM, leaf first) with the waypoint's SPIFFE ID.
    #[arg(long, requires_all = ["key", "roots"])]
    pub cert_chain: Option<PathBuf>,
    /// Private key (PEM, PKCS#8).
    #[arg(long, requires = "cert_chain")]
    pub key: Option<PathBuf>,
    /// Mesh root certificates (PEM).
    #[arg(long, requires = "cert_chain")]
    pub roots: Option<PathBuf>,
    /// How long shutdown waits for in-flight requests.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
    /// Access log destination: `stdout` or a file path.
    #[arg(long, default_value = "stdout")]
    pub access_log: String,
    /// Cluster id for telemetry labels.
    #[arg(long, default_value = DEFAULT_CLUSTER_ID)]
    pub cluster_id: String,
    /// Seed for the filters' random source (reproducible fault percentages).
    #[arg(long)]
    pub random_seed: Option<u64>,
    /// Log filter (RUST_LOG syntax); RUST_LOG wins when set.
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Data-plane worker threads, each serving its own share of the
    /// connections (default: one per CPU, like Envoy's `--concurrency`).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub worker_threads: Option<u16>,
    /// Compile filter components inside the proxy process instead of in a
    /// short-lived child process (the default keeps the compiler's code and
    /// memory out of the proxy's RSS).
    #[arg(long)]
    pub compile_in_process: bool,
}

/// Removes the `waypoint-<pid>-compile` directories (see
/// [`Args::resolve`]) that waypoints killed mid-compile (SIGKILL, OOM)
/// left in `tmp`: ones of this user whose process is gone. Returns how
/// many were removed.
pub fn remove_stale_compile_dirs(tmp: &std::path::Path) -> usize {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return 0;
    };
    let uid = rustix::process::geteuid().as_raw();
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("waypoint-"))
            .and_then(|n| n.strip_suffix("-compile"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let alive =
            pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists();
        let ours = e
            .path()
            .symlink_metadata()
            .is_ok_and(|m| m.is_dir() && m.uid() == uid);
        if !alive && ours && std::fs::remove_dir_all(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// The hidden first argument that makes the binary compile one component
/// and exit (the child side of the out-of-process compiler).
pub const COMPILE_SUBCOMMAND: &str = "__compile-filter";

fn listen(flag: &str, v: &str) -> Result<Option<SocketAddr>, String> {
    if v == "off" {
        return Ok(None);
    }
    v.parse()
        .map(Some)
        .map_err(|_| format!("--{flag} {v:?} is not ip:port or `off`"))
}

fn read(p: &Path) -> Result<String, String> {
    std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
}

/// Reads a certificate bundle from PEM files.
pub fn load_bundle(chain: &Path, key: &Path, roots: &Path) -> Result<CertBundle, String> {
    let chain_pem = read(chain)?;
    let leaf = certs_from_pem(&chain_pem)
        .map_err(|e| format!("{}: {e}", chain.display()))?
        .into_iter()
        .next()
        .ok_or_else(|| format!("{} holds no certificate", chain.display()))?;
    let (not_before, not_after) =
        validity_of(&leaf).map_err(|e| format!("{}: {e}", chain.display()))?;
    if not_after < SystemTime::now() {
        return Err(format!(
            "{} has expired; issue a new certificate",
            chain.display()
        ));
    }
    Ok(CertBundle {
        chain_pem,
        key_pem: read(key)?,
        roots_pem: read(roots)?,
        not_before,
        not_after,
    })
}

/// The operator endpoint of `--xds-address`: `ip:port` / `http://…`
/// (cleartext) or `https://…` verified with the PEM roots in `roots`.
pub fn xds_endpoint(addr: &str, roots: Option<&Path>) -> Result<Endpoint, String> {
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return Ok(Endpoint::plaintext(sa));
    }
    let uri: http::Uri = addr.parse().map_err(|_| {
        format!("--xds-address {addr:?} is not ip:port, http://host:port or https://host:port")
    })?;
    let tls = match (uri.scheme_str(), roots) {
        (Some("https"), Some(path)) => {
            let pem = read(path)?;
            let mut store = rustls::RootCertStore::empty();
            for c in certs_from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))? {
                store
                    .add(c)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            let cfg = rustls::ClientConfig::builder_with_provider(mesh_common::tls::provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(store)
                .with_no_client_auth();
            Some(Arc::new(cfg))
        }
        (Some("https"), None) => {
            return Err("--xds-address is https: pass --xds-root-cert with the mesh roots".into());
        }
        (Some("http"), _) => None,
        _ => {
            return Err(format!(
                "--xds-address {addr:?}: use ip:port, http:// or https://"
            ));
        }
    };
    Ok(Endpoint {
        uri,
        tls,
        server_name: None,
    })
}

impl Args {
    /// The options and the config source the flags describe.
    pub fn resolve(&self) -> Result<(Options, Box<dyn ConfigSource>), String> {
        let cert = match (&self.cert_chain, &self.key, &self.roots) {
            (Some(c), Some(k), Some(r)) => {
                let b = load_bundle(c, k, r)?;
                Some(RotatingCert::from_bundle(&b).map_err(|e| format!("certificate: {e}"))?)
            }
            _ => None,
        };
        let opts = Options {
            hbone_addr: listen("hbone-addr", &self.hbone_addr)?,
            http_addr: listen("http-addr", &self.http_addr)?,
            admin_addr: listen("admin-addr", &self.admin_addr)?,
            metrics_addr: listen("metrics-addr", &self.metrics_addr)?,
            ready_addr: listen("ready-addr", &self.ready_addr)?,
            cert,
            drain_timeout: self.drain_timeout,
            access_log: match self.access_log.as_str() {
                "stdout" | "-" => AccessLogTarget::Stdout,
                p => AccessLogTarget::File(PathBuf::from(p)),
            },
            cluster_id: self.cluster_id.clone(),
            random_seed: self.random_seed,
            workers: self
                .worker_threads
                .map_or_else(crate::waypoint::default_workers, usize::from),
            ..Options::standard()
        };
        let mut opts = opts;
        if !self.compile_in_process {
            match std::env::current_exe() {
                Ok(program) => {
                    opts.runtime.compiler = Some(crate::filter::OutOfProcessCompiler {
                        program,
                        args: vec![COMPILE_SUBCOMMAND.to_string()],
                        work_dir: std::env::temp_dir()
                            .join(format!("waypoint-{}-compile", std::process::id())),
                    });
                }
                Err(e) => tracing::warn!(
                    "compiling filters in-process: cannot locate this executable: {e}"
                ),
            }
        }
        let source: Box<dyn ConfigSource> = match (&self.config, &self.xds_address) {
            (Some(p), None) => Box::new(FileSource::new(p)),
            (None, Some(a)) => {
                let endpoint = xds_endpoint(a, self.xds_root_cert.as_deref())?;
                let (Some(name), Some(ns)) = (&self.name, &self.namespace) else {
                    return Err("--xds-address needs --name and --namespace of the waypoint".into());
                };
                let node = self.node.clone().unwrap_or_else(|| format!("{name}.{ns}"));
                Box::new(PushSource::new(endpoint, node, ns, name))
            }
            _ => {
                return Err(
                    "give a config source: --config <file> or --xds-address <host:port>".into(),
                );
            }
        };
        if opts.hbone_addr.is_some() && opts.cert.is_none() {
            return Err(
                "the HBONE listener needs --cert-chain, --key and --roots (or --hbone-addr off for plain HTTP only)".into(),
            );
        }
        Ok((opts, source))
    }
}

/// Re-reads the certificate files every `every` and rotates when they
/// changed (e.g. renewed by a sidecar agent).
pub fn watch_cert(
    cert: Arc<RotatingCert>,
    chain: PathBuf,
    key: PathBuf,
    roots: PathBuf,
    every: Duration,
) {
    tokio::spawn(async move {
        let mut last = std::fs::read(&chain).ok();
        loop {
            tokio::time::sleep(every).await;
            let now = std::fs::read(&chain).ok();
            if now == last {
                continue;
            }
            match load_bundle(&chain, &key, &roots)
                .and_then(|b| cert.rotate_bundle(&b).map_err(|e| e.to_string()))
            {
                Ok(()) => {
                    tracing::info!(path = %chain.display(), "certificate rotated");
                    last = now;
                }
                Err(e) => tracing::warn!("certificate not rotated: {e}"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_compile_directories_of_dead_processes_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = |name: &str| {
            let d = tmp.path().join(name);
            std::fs::create_dir(&d).unwrap();
            std::fs::write(d.join("x.wasm"), b"\0asm").unwrap();
            d
        };
        // No process has a pid above pid_max (at most 2^22).
        let dead = dir("waypoint-999999999-compile");
        let mine = dir(&format!("waypoint-{}-compile", std::process::id()));
        let init = dir("waypoint-1-compile");
        let other = dir("waypoint-cache");
        assert_eq!(remove_stale_compile_dirs(tmp.path()), 1);
        assert!(!dead.exists());
        assert!(mine.exists() && init.exists() && other.exists());
        assert_eq!(remove_stale_compile_dirs(tmp.path()), 0);
    }

    #[test]
    fn flags_resolve_to_options() {
        let a = Args::parse_from([
            "waypoint",
            "--config",
            "/tmp/w.yaml",
            "--hbone-addr",
            "off",
            "--http-addr",
            "127.0.0.1:8080",
        ]);
        let (o, s) = a.resolve().unwrap();
        assert_eq!(o.hbone_addr, None);
        assert_eq!(o.http_addr, Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(s.describe(), "file:/tmp/w.yaml");
        let a = Args::parse_from(["waypoint", "--config", "/tmp/w.yaml"]);
        assert!(a.resolve().unwrap_err().contains("--cert-chain"));
        let a = Args::parse_from(["waypoint", "--hbone-addr", "off"]);
        assert!(a.resolve().unwrap_err().contains("config source"));
        let a = Args::parse_from([
            "waypoint",
            "--config",
            "x",
            "--hbone-addr",
            "off",
            "--http-addr",
            "nope",
        ]);
        assert!(a.resolve().unwrap_err().contains("--http-addr"));
    }
}
