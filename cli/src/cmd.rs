//! Command-line definitions (clap): istioctl's verbs, the kubectl verbs the
//! seed guide uses against the local mesh, and the local mesh's own.

use crate::output::Format;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// istioctl-shaped CLI for the mesh, and a one-command local mesh.
#[derive(Debug, Parser)]
#[command(name = "meshctl", version, about, long_about = None)]
pub struct Cli {
    /// Run directory of the local mesh (default /tmp/meshctl-<uid>, or $MESHCTL_RUN_DIR).
    #[arg(long, global = true, env = "MESHCTL_RUN_DIR")]
    pub run_dir: Option<PathBuf>,
    /// Where the ztunnel and waypoint binaries are (default: next to meshctl, $MESH_BIN_DIR, PATH).
    #[arg(long, global = true)]
    pub bin_dir: Option<PathBuf>,
    /// Command.
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Namespace selection shared by most commands.
#[derive(Debug, Clone, Args)]
pub struct Ns {
    /// Namespace.
    #[arg(short = 'n', long = "namespace", default_value = "default")]
    pub namespace: String,
}

/// Output selection.
#[derive(Debug, Clone, Args)]
pub struct Out {
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Start a local mesh: operator, a ztunnel per node, waypoints, the seed's `shop` sample, examples/ applied.
    Up(UpArgs),
    /// Stop the local mesh and remove everything it created (processes, network namespaces, capture rules).
    Down(DownArgs),
    /// Run the seed guide's Verify section against the local mesh.
    Verify(VerifyArgs),
    /// Render the cluster manifests (CRDs, operator Deployment, ztunnel DaemonSet) for Kubernetes.
    Install(InstallArgs),
    /// Manage waypoint configuration.
    #[command(subcommand)]
    Waypoint(WaypointCmd),
    /// Inspect ztunnel: workloads, services, log level.
    #[command(subcommand, name = "ztunnel-config", visible_alias = "zc")]
    ZtunnelConfig(ZtunnelCmd),
    /// Inspect a waypoint: routes, clusters.
    #[command(subcommand, name = "proxy-config", visible_alias = "pc")]
    ProxyConfig(ProxyCmd),
    /// Analyze configuration and print Istio's validation messages.
    Analyze(AnalyzeArgs),
    /// Authorization tools.
    #[command(subcommand)]
    Authz(AuthzCmd),
    /// WebAssembly filters (WasmPlugin): push, list, rollout, rollback.
    #[command(subcommand)]
    Filter(FilterCmd),
    /// Apply manifests to the local mesh (`kubectl apply -f`).
    Apply(ApplyArgs),
    /// Delete objects from the local mesh (`kubectl delete`).
    Delete(DeleteArgs),
    /// List or show objects of the local mesh (`kubectl get`).
    Get(GetArgs),
    /// Show an object with its status conditions (`kubectl describe`; YAML).
    Describe(GetArgs),
    /// Set or remove labels (`kubectl label`).
    Label(LabelArgs),
    /// Run a command inside a pod's network namespace (`kubectl exec`).
    Exec(ExecArgs),
    /// Print a pod's or proxy's log (`kubectl logs`).
    Logs(LogsArgs),
    /// Start a pod, optionally run a command in it and remove it (`kubectl run`).
    Run(RunArgs),
    /// Restart a component of the local mesh (`kubectl rollout restart`):
    /// `deployment/istiod -n istio-system` replaces the control plane process.
    #[command(subcommand)]
    Rollout(RolloutCmd),
    /// JSON Web Tokens for the examples (local issuer).
    #[command(subcommand)]
    Jwt(JwtCmd),
    /// The sample app each pod runs (internal).
    #[command(hide = true)]
    App(AppArgs),
    /// The local control plane process (internal; started by `up`).
    #[command(hide = true)]
    Controlplane(ControlplaneArgs),
}

/// `up`.
#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// Number of nodes (one ztunnel each).
    #[arg(long, default_value_t = 2)]
    pub nodes: usize,
    /// Network id 0-9 (netns `mesh<id>-*`, addresses 10.<200+id>.x.x): run several meshes side by side.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=9))]
    pub net_id: u8,
    /// Manifests to apply (default: ./examples/shop when present, else the copy built into meshctl).
    #[arg(long)]
    pub manifests: Option<PathBuf>,
    /// Only the sample workloads, unmeshed (the guide's starting point).
    #[arg(long)]
    pub bare: bool,
    /// Run `verify` once the mesh is up; exit non-zero when a check fails.
    #[arg(long)]
    pub verify: bool,
    /// First-party filter components (jwt.wasm, authz.wasm, …) (default: $MESH_GUEST_CACHE/out).
    #[arg(long)]
    pub filters_dir: Option<PathBuf>,
    /// Loopback mode: no network namespaces, no traffic capture; every
    /// process on its own 127.x address (the default without root).
    #[arg(long)]
    pub loopback: bool,
    /// Seconds to wait for the mesh to become ready.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
}

/// `down`.
#[derive(Debug, Clone, Args)]
pub struct DownArgs {
    /// Also clean up a mesh whose state file is gone (by network id): stop the processes in its network namespaces and delete them.
    #[arg(long)]
    pub force: bool,
    /// Network id for --force.
    #[arg(long, default_value_t = 0)]
    pub net_id: u8,
    /// Keep the logs directory.
    #[arg(long)]
    pub keep_logs: bool,
}

/// `verify`.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// Namespace of the sample.
    #[arg(short = 'n', long = "namespace", default_value = "shop")]
    pub namespace: String,
    /// Requests sent to measure the 90/10 split.
    #[arg(long, default_value_t = 1000)]
    pub requests: u32,
}

/// `install`.
#[derive(Debug, Clone, Args)]
pub struct InstallArgs {
    /// Settings (`profile=ambient`, `hub=…`, `tag=…`, `values.meshConfig.trustDomain=…`).
    #[arg(long = "set")]
    pub set: Vec<String>,
    /// Accepted for istioctl compatibility (install only renders).
    #[arg(short = 'y', long)]
    pub skip_confirmation: bool,
    /// Only the CRDs.
    #[arg(long)]
    pub crds_only: bool,
}

/// `waypoint …`.
#[derive(Debug, Subcommand)]
pub enum WaypointCmd {
    /// Apply a waypoint configuration to the local mesh.
    Apply(WaypointApply),
    /// Generate a waypoint configuration as YAML.
    Generate(WaypointGenerate),
    /// List managed waypoint configurations.
    List(WaypointList),
    /// Delete a waypoint configuration.
    Delete(WaypointDelete),
    /// Show the status of waypoints in a namespace.
    Status(WaypointStatus),
}

/// `waypoint generate`.
#[derive(Debug, Clone, Args)]
pub struct WaypointGenerate {
    /// Namespace (omitted from the YAML when not given).
    #[arg(short = 'n', long = "namespace")]
    pub namespace: Option<String>,
    /// Name of the waypoint.
    #[arg(long, default_value = "waypoint")]
    pub name: String,
    /// Traffic type: all, none, service, workload.
    #[arg(long = "for")]
    pub traffic_type: Option<String>,
    /// Revision label.
    #[arg(short = 'r', long)]
    pub revision: Option<String>,
}

/// `waypoint apply`.
#[derive(Debug, Clone, Args)]
pub struct WaypointApply {
    #[command(flatten)]
    /// Namespace.
    pub ns: Ns,
    /// Name of the waypoint.
    #[arg(long, default_value = "waypoint")]
    pub name: String,
    /// Traffic type: all, none, service, workload.
    #[arg(long = "for")]
    pub traffic_type: Option<String>,
    /// Revision label.
    #[arg(short = 'r', long)]
    pub revision: Option<String>,
    /// Label the namespace with istio.io/use-waypoint=<name>.
    #[arg(long)]
    pub enroll_namespace: bool,
    /// Overwrite the namespace's existing waypoint label.
    #[arg(long)]
    pub overwrite: bool,
    /// Wait until the waypoint is Programmed.
    #[arg(short = 'w', long)]
    pub wait: bool,
    /// Timeout for --wait.
    #[arg(long, default_value = "90s", value_parser = humantime::parse_duration)]
    pub waypoint_timeout: std::time::Duration,
}

/// `waypoint list`.
#[derive(Debug, Clone, Args)]
pub struct WaypointList {
    #[command(flatten)]
    /// Namespace.
    pub ns: Ns,
    /// All namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    #[command(flatten)]
    /// Output.
    pub out: Out,
}

/// `waypoint delete`.
#[derive(Debug, Clone, Args)]
pub struct WaypointDelete {
    #[command(flatten)]
    /// Namespace.
    pub ns: Ns,
    /// Waypoint names.
    pub names: Vec<String>,
    /// Delete all waypoints in the namespace.
    #[arg(long)]
    pub all: bool,
    /// Delete the waypoints of this revision.
    #[arg(short = 'r', long)]
    pub revision: Option<String>,
}

/// `waypoint status`.
#[derive(Debug, Clone, Args)]
pub struct WaypointStatus {
    /// Namespace (istioctl's default: `default`).
    #[arg(short = 'n', long = "namespace", default_value = "default")]
    pub namespace: String,
    /// Show the status of waypoints in all namespaces.
    #[arg(short = 'A', long = "all-namespaces")]
    pub all_namespaces: bool,
    /// Only this waypoint (istioctl shows every waypoint of the namespace).
    #[arg(long)]
    pub name: Option<String>,
    /// Wait until Programmed (default true, as istioctl; `--wait=false`
    /// prints the current status and returns).
    #[arg(
        short = 'w',
        long,
        default_value_t = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub wait: bool,
    /// Timeout for --wait.
    #[arg(long, default_value = "90s", value_parser = humantime::parse_duration)]
    pub waypoint_timeout: std::time::Duration,
}

/// `ztunnel-config …`.
#[derive(Debug, Subcommand)]
pub enum ZtunnelCmd {
    /// Workloads as ztunnel sees them (address, node, waypoint, protocol).
    #[command(visible_alias = "workload")]
    Workloads(ZtWorkloads),
    /// Services and the waypoint each maps to.
    #[command(visible_alias = "service")]
    Services(ZtServices),
    /// Show or change a ztunnel's log level.
    Log(ZtLog),
    /// L4 authorization policies ztunnel enforces.
    #[command(visible_alias = "policy")]
    Policies(ZtServices),
    /// Workload certificates ztunnel holds (leaf, intermediates, roots).
    #[command(visible_aliases = ["certificate", "certs", "secret", "secrets"])]
    Certificates(ZtCerts),
}

/// `zc certificates`.
#[derive(Debug, Clone, Args)]
pub struct ZtCerts {
    #[command(flatten)]
    /// Target.
    pub target: ZtTarget,
    #[command(flatten)]
    /// Output.
    pub out: Out,
}

/// Which ztunnel(s) to ask.
#[derive(Debug, Clone, Args)]
pub struct ZtTarget {
    /// ztunnel pod (`ztunnel-node1`) or node (`node1`); default: all.
    #[arg(long = "node")]
    pub node: Option<String>,
}

/// `zc workloads`.
#[derive(Debug, Clone, Args)]
pub struct ZtWorkloads {
    /// Only workloads in this namespace.
    #[arg(long)]
    pub workload_namespace: Option<String>,
    /// Only the workload with this address.
    #[arg(long)]
    pub address: Option<String>,
    #[command(flatten)]
    /// Target.
    pub target: ZtTarget,
    #[command(flatten)]
    /// Output.
    pub out: Out,
}

/// `zc services`.
#[derive(Debug, Clone, Args)]
pub struct ZtServices {
    /// Only services in this namespace.
    #[arg(short = 'n', long = "namespace", alias = "service-namespace")]
    pub namespace: Option<String>,
    #[command(flatten)]
    /// Target.
    pub target: ZtTarget,
    #[command(flatten)]
    /// Output.
    pub out: Out,
}

/// `zc log`.
#[derive(Debug, Clone, Args)]
pub struct ZtLog {
    /// ztunnel pod (`ztunnel-node1`); all when omitted.
    pub pod: Option<String>,
    /// New level, e.g. `info,access=debug` (tracing filter syntax).
    #[arg(long)]
    pub level: Option<String>,
    /// Reset to `info`.
    #[arg(short = 'r', long)]
    pub reset: bool,
}

/// `proxy-config …`.
#[derive(Debug, Subcommand)]
pub enum ProxyCmd {
    /// HTTP routes of a waypoint.
    Routes(ProxyArgs),
    /// Clusters (service, port, subset) of a waypoint.
    Clusters(ProxyArgs),
    /// Filter chain of a waypoint.
    Filters(ProxyArgs),
}

/// Target of `proxy-config`.
#[derive(Debug, Clone, Args)]
pub struct ProxyArgs {
    /// Waypoint: `deploy/waypoint`, `waypoint` or `waypoint.shop`.
    pub target: String,
    #[command(flatten)]
    /// Namespace.
    pub ns: Ns,
    #[command(flatten)]
    /// Output.
    pub out: Out,
}

/// `analyze`.
#[derive(Debug, Clone, Args)]
pub struct AnalyzeArgs {
    /// Files or directories to analyze (offline); default: the running local mesh.
    pub files: Vec<PathBuf>,
    /// Namespace to report on.
    #[arg(short = 'n', long = "namespace")]
    pub namespace: Option<String>,
    /// All namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    #[command(flatten)]
    /// Output.
    pub out: Out,
}

/// `authz …`.
#[derive(Debug, Subcommand)]
pub enum AuthzCmd {
    /// Explain whether a request from a workload to a destination is allowed, and by which policy.
    Check(AuthzCheck),
}

/// `authz check`.
#[derive(Debug, Clone, Args)]
pub struct AuthzCheck {
    /// Source: pod (`web-7c5d2`), `deploy/web`, or a principal `cluster.local/ns/shop/sa/web`.
    #[arg(long)]
    pub from: String,
    /// Destination: service host (`orders`, `orders.shop`, FQDN), pod name or IP, with optional `:port`.
    #[arg(long)]
    pub to: String,
    #[command(flatten)]
    /// Namespace of --from / --to short names.
    pub ns: Ns,
    /// HTTP method.
    #[arg(short = 'X', long, default_value = "GET")]
    pub method: String,
    /// Path.
    #[arg(long, default_value = "/")]
    pub path: String,
    /// Request header `name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// A JWT the waypoint validated, as `issuer/subject`.
    #[arg(long)]
    pub request_principal: Option<String>,
    /// JWT claims (JSON object) for `request.auth.claims[…]` conditions.
    #[arg(long)]
    pub claims: Option<String>,
    /// Offline: files or directories to evaluate instead of the running mesh.
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    /// Output.
    pub out: Out,
}

/// `filter …`.
#[derive(Debug, Subcommand)]
pub enum FilterCmd {
    /// Push a filter module (a WasmPlugin targeting a waypoint or service).
    Push(FilterPush),
    /// List filters: WasmPlugins and what each waypoint runs.
    List(FilterList),
    /// Move a filter's canary percentage (100 promotes the new version).
    Rollout(FilterRollout),
    /// Go back to the previous version of a filter.
    Rollback(FilterRollback),
}

/// `filter push`.
#[derive(Debug, Clone, Args)]
pub struct FilterPush {
    /// WasmPlugin name.
    pub name: String,
    /// Component file (`.wasm`), or a guest name from the build manifest (`example-js`).
    #[arg(long, conflicts_with = "url")]
    pub file: Option<String>,
    /// Module URL (`https://…` with --sha256, `oci://…`, `file://…`).
    #[arg(long)]
    pub url: Option<String>,
    /// Expected SHA-256 with --url.
    #[arg(long)]
    pub sha256: Option<String>,
    #[command(flatten)]
    /// Namespace.
    pub ns: Ns,
    /// Target: `gateway/<name>` (a waypoint) or `service/<name>`.
    #[arg(long, default_value = "gateway/waypoint")]
    pub target: String,
    /// pluginConfig (JSON).
    #[arg(long)]
    pub config: Option<String>,
    /// Phase: AUTHN, AUTHZ, STATS (default: after the first-party filters).
    #[arg(long)]
    pub phase: Option<String>,
    /// Priority within the phase.
    #[arg(long)]
    pub priority: Option<i32>,
    /// FAIL_OPEN instead of FAIL_CLOSE.
    #[arg(long)]
    pub fail_open: bool,
    /// Capabilities granted (default log, metrics).
    #[arg(long = "capability")]
    pub capabilities: Vec<String>,
    /// Canary: share of requests (0-100) for this version while the previous keeps the rest.
    #[arg(long)]
    pub canary: Option<f64>,
    /// Memory limit per instance (`64Mi`).
    #[arg(long)]
    pub memory: Option<String>,
    /// CPU deadline per hook (`5ms`).
    #[arg(long)]
    pub cpu: Option<String>,
    /// Wait until every targeted waypoint runs this version.
    #[arg(short = 'w', long)]
    pub wait: bool,
}

/// `filter list`.
#[derive(Debug, Clone, Args)]
pub struct FilterList {
    #[command(flatten)]
    /// Namespace.
    pub ns: Ns,
    /// All namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    #[command(flatten)]
    /// Output.
    pub out: Out,
}

/// `filter rollout`.
#[derive(Debug, Clone, Args)]
pub struct FilterRollout {
    /// WasmPlugin name.
    pub name: String,
    #[command(flatten)]
    /// Namespace.
    pub ns: Ns,
    /// Share of requests for the new version (100 promotes it).
    #[arg(long)]
    pub percent: f64,
}

/// `filter rollback`.
#[derive(Debug, Clone, Args)]
pub struct FilterRollback {
    /// WasmPlugin name.
    pub name: String,
    #[command(flatten)]
    /// Namespace.
    pub ns: Ns,
}

/// `apply`.
#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    /// Files or directories (`-` for stdin).
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Namespace for objects without one.
    #[arg(short = 'n', long = "namespace", default_value = "default")]
    pub namespace: String,
}

/// `delete`.
#[derive(Debug, Clone, Args)]
pub struct DeleteArgs {
    /// `KIND NAME…` (when no -f).
    pub args: Vec<String>,
    /// Files or directories.
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    /// Namespace.
    pub ns: Ns,
}

/// `get`.
#[derive(Debug, Clone, Args)]
pub struct GetArgs {
    /// Kind (`pods`, `svc`, `gateways.gateway.networking.k8s.io`, `authorizationpolicies`, …).
    pub kind: String,
    /// Names.
    pub names: Vec<String>,
    #[command(flatten)]
    /// Namespace.
    pub ns: Ns,
    /// All namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Output: table, wide, json, yaml, jsonpath=<template>.
    #[arg(short = 'o', long = "output", default_value = "table")]
    pub output: String,
    /// Show labels.
    #[arg(long)]
    pub show_labels: bool,
}

/// `label`.
#[derive(Debug, Clone, Args)]
pub struct LabelArgs {
    /// Kind (`namespace`, `service`, `pod`, `deployment`, `statefulset`).
    pub kind: String,
    /// Name.
    pub name: String,
    /// Changes: `key=value`, `key-`.
    #[arg(required = true)]
    pub changes: Vec<String>,
    #[command(flatten)]
    /// Namespace.
    pub ns: Ns,
    /// Replace existing values.
    #[arg(long)]
    pub overwrite: bool,
}

/// `exec`.
#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    /// Pod, `deploy/<name>`, `ds/ztunnel`, `ztunnel-node1`.
    pub target: String,
    #[command(flatten)]
    /// Namespace.
    pub ns: Ns,
    /// Container (accepted for kubectl compatibility).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Command and arguments (after `--`).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// `logs`.
#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// Pod, `deploy/<name>`, `ztunnel-node1`, `istiod`.
    pub target: String,
    #[command(flatten)]
    /// Namespace.
    pub ns: Ns,
    /// Container (accepted for kubectl compatibility).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Last N lines.
    #[arg(long)]
    pub tail: Option<usize>,
}

/// `run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Pod name.
    pub name: String,
    #[command(flatten)]
    /// Namespace.
    pub ns: Ns,
    /// Image (informational: pods run the command given after `--`).
    #[arg(long)]
    pub image: Option<String>,
    /// Labels `k=v,k2=v2`.
    #[arg(short = 'l', long)]
    pub labels: Option<String>,
    /// ServiceAccount.
    #[arg(long, default_value = "default")]
    pub serviceaccount: String,
    /// Node.
    #[arg(long)]
    pub node: Option<String>,
    /// Delete the pod when the command exits.
    #[arg(long)]
    pub rm: bool,
    /// Accepted for kubectl compatibility.
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Accepted for kubectl compatibility.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Accepted for kubectl compatibility.
    #[arg(long)]
    pub restart: Option<String>,
    /// Command to run in the pod.
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// `rollout …`.
#[derive(Debug, Subcommand)]
pub enum RolloutCmd {
    /// Replace the process: `meshctl rollout restart deployment/istiod -n istio-system`.
    Restart(RolloutRestart),
}

/// `rollout restart`.
#[derive(Debug, Clone, Args)]
pub struct RolloutRestart {
    /// What to restart: `deployment/istiod` (the control plane).
    pub target: String,
    /// Namespace.
    #[arg(short, long, default_value = "istio-system")]
    pub namespace: String,
    /// Seconds to wait for the new process to serve.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
}

/// `jwt …`.
#[derive(Debug, Subcommand)]
pub enum JwtCmd {
    /// Mint a token signed by the examples' local issuer.
    Mint(JwtMint),
}

/// `jwt mint`.
#[derive(Debug, Clone, Args)]
pub struct JwtMint {
    /// Signing key (PEM): default examples/jwt/signing-key.pem (built in).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Key id (`kid`).
    #[arg(long, default_value = "mesh-example")]
    pub kid: String,
    /// Issuer.
    #[arg(long, default_value = "https://accounts.example.com")]
    pub iss: String,
    /// Subject.
    #[arg(long, default_value = "alice")]
    pub sub: String,
    /// Audience.
    #[arg(long)]
    pub aud: Option<String>,
    /// Lifetime.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: std::time::Duration,
    /// Extra claim `name=value` (JSON values accepted).
    #[arg(long = "claim")]
    pub claims: Vec<String>,
}

/// `app` (internal).
#[derive(Debug, Clone, Args)]
pub struct AppArgs {
    /// Listen address (repeatable).
    #[arg(long, required = true)]
    pub listen: Vec<std::net::SocketAddr>,
    /// Pod name.
    #[arg(long, default_value = "")]
    pub pod: String,
    /// Namespace.
    #[arg(long, default_value = "")]
    pub namespace: String,
    /// App label.
    #[arg(long, default_value = "")]
    pub app: String,
    /// Version label.
    #[arg(long, default_value = "")]
    pub version: String,
}

/// `controlplane` (internal).
#[derive(Debug, Clone, Args)]
pub struct ControlplaneArgs {
    /// The waypoint binary to launch.
    #[arg(long)]
    pub waypoint_bin: PathBuf,
    /// First-party filter components.
    #[arg(long)]
    pub filters_dir: Option<PathBuf>,
    /// Network namespace to run in (entered before any thread starts, so
    /// the process stays in the host's mount namespace and the network
    /// namespaces it creates for waypoints are visible to everyone).
    #[arg(long)]
    pub netns: Option<String>,
}
