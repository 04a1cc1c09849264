//! Where a local mesh keeps its state (the run directory) and where the
//! binaries it starts live.
//!
//! ```text
//! <run dir>/                       (default /tmp/meshctl-<uid>, or $MESHCTL_RUN_DIR)
//!   state.json                     network plan, pids, network namespaces
//!   cluster.yaml                   namespaces, workloads, pods, services (the "API server")
//!   inventory/inventory.yaml       rendered from cluster.yaml for the operator
//!   config/                        Istio / Gateway API objects, one file each
//!   operator/                      operator state (CA, modules), roots.pem, ready
//!   waypoints/<ns>.<name>.json     waypoint processes started by the control plane
//!   filters/                       pushed filter modules and their history
//!   logs/                          one log per process
//! ```

use std::path::{Path, PathBuf};

/// Context errors.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// No local mesh in the run directory.
    #[error("no local mesh in {0}: start one with `meshctl up` (or pass --run-dir)")]
    NoMesh(PathBuf),
    /// A binary is missing.
    #[error(
        "cannot find the `{0}` binary next to meshctl, in $MESH_BIN_DIR or on PATH: build it with `cargo build -p {1}` (or pass --bin-dir)"
    )]
    MissingBinary(String, String),
    /// The lock could not be taken.
    #[error("cannot lock {path}: {source}")]
    Lock {
        /// Lock file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// Paths of one local mesh.
#[derive(Debug, Clone)]
pub struct RunDir {
    /// The directory.
    pub root: PathBuf,
}

impl RunDir {
    /// The run directory chosen by flag, `$MESHCTL_RUN_DIR` or the default.
    pub fn resolve(flag: Option<&Path>) -> Self {
        let root = match flag {
            Some(p) => p.to_path_buf(),
            None => match std::env::var_os("MESHCTL_RUN_DIR") {
                Some(p) => PathBuf::from(p),
                None => PathBuf::from(format!("/tmp/meshctl-{}", nix::unistd::Uid::effective())),
            },
        };
        RunDir { root }
    }

    /// `state.json`.
    pub fn state_file(&self) -> PathBuf {
        self.root.join("state.json")
    }
    /// `cluster.yaml`.
    pub fn cluster_file(&self) -> PathBuf {
        self.root.join("cluster.yaml")
    }
    /// Inventory the operator reads.
    pub fn inventory_file(&self) -> PathBuf {
        self.root.join("inventory").join("inventory.yaml")
    }
    /// Istio objects.
    pub fn config_dir(&self) -> PathBuf {
        self.root.join("config")
    }
    /// Operator state.
    pub fn operator_dir(&self) -> PathBuf {
        self.root.join("operator")
    }
    /// Roots the proxies verify the operator with.
    pub fn roots_file(&self) -> PathBuf {
        self.operator_dir().join("roots.pem")
    }
    /// Written by the control plane once it serves.
    pub fn ready_file(&self) -> PathBuf {
        self.operator_dir().join("ready.json")
    }
    /// Waypoint records.
    pub fn waypoints_dir(&self) -> PathBuf {
        self.root.join("waypoints")
    }
    /// Filter modules and history.
    pub fn filters_dir(&self) -> PathBuf {
        self.root.join("filters")
    }
    /// Logs.
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// Log file of a process.
    pub fn log_file(&self, name: &str) -> PathBuf {
        self.logs_dir().join(format!("{name}.log"))
    }

    /// `Ok` when a mesh was started here.
    pub fn require(&self) -> Result<(), ContextError> {
        if self.state_file().exists() {
            Ok(())
        } else {
            Err(ContextError::NoMesh(self.root.clone()))
        }
    }

    /// Take the run directory's lock (held until the guard drops): one
    /// mutating command at a time.
    pub fn lock(&self) -> Result<Lock, ContextError> {
        let path = self.root.join("lock");
        let err = |source| ContextError::Lock {
            path: path.clone(),
            source,
        };
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(err)?;
        let flock = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| err(std::io::Error::from(e)))?;
        Ok(Lock { _flock: flock })
    }
}

/// Holds the run directory lock.
#[derive(Debug)]
pub struct Lock {
    _flock: nix::fcntl::Flock<std::fs::File>,
}

/// Find a binary: `--bin-dir`, `$MESH_BIN_DIR`, next to this executable,
/// then `PATH`. `package` names the cargo package that builds it.
pub fn find_binary(
    name: &str,
    package: &str,
    bin_dir: Option<&Path>,
) -> Result<PathBuf, ContextError> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = bin_dir {
        dirs.push(d.to_path_buf());
    }
    if let Some(d) = std::env::var_os("MESH_BIN_DIR") {
        dirs.push(PathBuf::from(d));
    }
    if let Some(d) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        // Test binaries live in target/<profile>/deps.
        if d.ends_with("deps")
            && let Some(p) = d.parent()
        {
            dirs.push(p.to_path_buf());
        }
        dirs.push(d);
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| ContextError::MissingBinary(name.into(), package.into()))
}

/// Write a file atomically (temporary file + rename).
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)
}
