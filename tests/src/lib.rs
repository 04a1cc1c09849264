//! Support for the end-to-end tests: locate the built binaries, run
//! `meshctl`, start a local mesh in its own run directory and network id,
//! and tear it down when the test ends (also on panic).
//!
//! Tiers (see tests/README.md): `offline_cli` needs only the built
//! binaries; the others need root (network namespaces, iptables) and skip
//! with a message otherwise.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The repository root (for `examples/`).
pub fn repo() -> PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .parent()
    .map(Path::to_path_buf)
    .unwrap_or_default()
}

/// Directory holding the built binaries: `$MESH_BIN_DIR`, else the cargo
/// target directory this test was built into.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("MESH_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let deps = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if deps.ends_with("deps") {
        deps.parent().map(Path::to_path_buf).unwrap_or(deps)
    } else {
        deps
    }
}

/// Path of a built binary, or `None` with a message naming the build command.
pub fn binary(name: &str, package: &str) -> Option<PathBuf> {
    let p = bin_dir().join(name);
    if p.is_file() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED: {} not built (cargo build -p {package}, or set MESH_BIN_DIR)",
            p.display()
        );
        None
    }
}

/// `true` (after printing why) when the root-only tiers cannot run here.
pub fn skip_unless_root() -> bool {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!(
            "SKIPPED: this end-to-end test needs root (network namespaces, iptables capture); CI runs it as root"
        );
        return true;
    }
    for tool in ["ip", "iptables", "curl"] {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            eprintln!("SKIPPED: {tool} is not installed (scripts/setup.sh installs it)");
            return true;
        }
    }
    let guests = guest_dir();
    for f in ["jwt", "authz", "routing", "fault", "retry"] {
        if !guests.join(format!("{f}.wasm")).is_file() {
            eprintln!(
                "SKIPPED: first-party filter {f}.wasm not built in {} (scripts/build-guests.sh)",
                guests.display()
            );
            return true;
        }
    }
    ["meshctl", "ztunnel", "waypoint"]
        .iter()
        .zip(["meshctl", "ztunnel", "waypoint"])
        .any(|(b, p)| binary(b, p).is_none())
}

/// The guest build output (`$MESH_GUEST_CACHE/out`).
pub fn guest_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("MESH_GUEST_CACHE") {
        return PathBuf::from(d).join("out");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    std::env::var_os("MESH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".cache/ambient-mesh"))
        .join("guests/out")
}

/// Output of a command as text.
#[derive(Debug, Clone)]
pub struct Run {
    /// Exit code.
    pub code: i32,
    /// Stdout.
    pub stdout: String,
    /// Stderr.
    pub stderr: String,
}

impl Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Panic with both streams unless the exit code is 0.
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "command failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Run `meshctl` with `args` (no run directory).
pub fn meshctl(args: &[&str]) -> Run {
    let bin = bin_dir().join("meshctl");
    Run::from(
        Command::new(&bin)
            .args(args)
            .current_dir(repo())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", bin.display())),
    )
}

/// A local mesh owned by a test: its own run directory and network id;
/// `meshctl down` on drop.
pub struct LocalMesh {
    /// Run directory.
    pub dir: tempfile::TempDir,
    /// Network id.
    pub net_id: u8,
}

impl LocalMesh {
    /// `meshctl up --net-id <id> <extra>` (panics with the logs on failure).
    pub fn up(net_id: u8, extra: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("meshctl-e2e-")
            .tempdir()
            .unwrap_or_else(|e| panic!("tempdir: {e}"));
        let m = LocalMesh { dir, net_id };
        let id = net_id.to_string();
        let mut args = vec!["up", "--net-id", &id];
        args.extend_from_slice(extra);
        let r = m.run(&args);
        if r.code != 0 {
            panic!(
                "meshctl up failed\nstdout:\n{}\nstderr:\n{}\n{}",
                r.stdout,
                r.stderr,
                m.log_tail()
            );
        }
        m
    }

    /// Run `meshctl --run-dir <dir> args…`.
    pub fn run(&self, args: &[&str]) -> Run {
        let bin = bin_dir().join("meshctl");
        let out = Command::new(&bin)
            .arg("--run-dir")
            .arg(self.dir.path())
            .args(args)
            .current_dir(repo())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
        Run::from(out)
    }

    /// Run and require success.
    pub fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        if r.code != 0 {
            panic!(
                "meshctl {args:?} failed ({})\nstdout:\n{}\nstderr:\n{}\n{}",
                r.code,
                r.stdout,
                r.stderr,
                self.log_tail()
            );
        }
        r
    }

    /// `curl` from a pod (`deploy/web`, `probe`): the status code, then the body.
    pub fn curl(&self, ns: &str, from: &str, url: &str, extra: &[&str]) -> (String, String) {
        let mut args = vec![
            "exec",
            "-n",
            ns,
            from,
            "--",
            "curl",
            "-s",
            "-m",
            "10",
            "-w",
            "\n%{http_code}",
        ];
        args.extend_from_slice(extra);
        args.push(url);
        let r = self.run(&args);
        let (body, code) = r
            .stdout
            .rsplit_once('\n')
            .unwrap_or(("", r.stdout.as_str()));
        (code.trim().to_string(), body.to_string())
    }

    /// Status codes of `n` requests sent by one curl from a pod (`--parallel` when `parallel`).
    pub fn curl_many(
        &self,
        ns: &str,
        from: &str,
        url: &str,
        n: usize,
        extra: &[&str],
    ) -> Vec<String> {
        let mut args: Vec<String> = [
            "exec",
            "-n",
            ns,
            from,
            "--",
            "curl",
            "-s",
            "-m",
            "20",
            "-w",
            "%{http_code}\\n",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        // curl pairs each -o with one URL.
        for _ in 0..n {
            args.extend(["-o".to_string(), "/dev/null".to_string(), url.to_string()]);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(&refs).stdout.lines().map(str::to_string).collect()
    }

    /// Keeps `from` calling `url` (batches of `batch` requests, `parallel`
    /// at a time, one `curl` per batch) from `lead` before `during` runs
    /// until `settle` after it returns. Returns every status code seen and
    /// what `during` returned.
    pub fn traffic_around<R>(
        self: &std::sync::Arc<Self>,
        (ns, from, url): (&str, &str, &str),
        batch: usize,
        parallel: usize,
        lead: Duration,
        settle: Duration,
        during: impl FnOnce() -> R,
    ) -> (Vec<String>, R) {
        use std::sync::atomic::{AtomicBool, Ordering};
        /// Stops and joins the traffic thread, also when `during` panics:
        /// the thread holds a clone of the mesh, whose drop tears it down.
        struct Traffic {
            stop: std::sync::Arc<AtomicBool>,
            thread: Option<std::thread::JoinHandle<Vec<String>>>,
        }
        impl Traffic {
            fn finish(&mut self) -> Vec<String> {
                self.stop.store(true, Ordering::Relaxed);
                self.thread
                    .take()
                    .map(|t| t.join().unwrap_or_default())
                    .unwrap_or_default()
            }
        }
        impl Drop for Traffic {
            fn drop(&mut self) {
                self.finish();
            }
        }
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let thread = {
            let (m, stop) = (self.clone(), stop.clone());
            let (ns, from, url) = (ns.to_string(), from.to_string(), url.to_string());
            let parallel = parallel.to_string();
            std::thread::spawn(move || {
                let mut codes = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    codes.extend(m.curl_many(
                        &ns,
                        &from,
                        &url,
                        batch,
                        &["--parallel", "--parallel-max", &parallel],
                    ));
                }
                codes
            })
        };
        let mut traffic = Traffic {
            stop,
            thread: Some(thread),
        };
        std::thread::sleep(lead);
        let r = during();
        std::thread::sleep(settle);
        (traffic.finish(), r)
    }

    /// Prometheus text of every waypoint in `ns` named `name`.
    pub fn waypoint_metrics(&self, ns: &str, name: &str) -> String {
        let target = format!("deploy/{name}");
        self.run(&[
            "exec",
            "-n",
            ns,
            &target,
            "--",
            "curl",
            "-s",
            "-m",
            "5",
            "http://127.0.0.1:15020/stats/prometheus",
        ])
        .stdout
    }

    /// Poll `f` until it is true (panics with `what` and the log tail after `timeout`).
    pub fn wait_for(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        panic!("timed out waiting for {what}\n{}", self.log_tail());
    }

    /// The last lines of every log (for failure messages).
    pub fn log_tail(&self) -> String {
        let mut out = String::new();
        let Ok(rd) = std::fs::read_dir(self.dir.path().join("logs")) else {
            return out;
        };
        let mut files: Vec<PathBuf> = rd.filter_map(Result::ok).map(|e| e.path()).collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {} (last 15 lines)\n", f.display()));
            for l in &lines[lines.len().saturating_sub(15)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for LocalMesh {
    fn drop(&mut self) {
        if std::env::var_os("KEEP_MESH").is_some() {
            eprintln!(
                "KEEP_MESH set: mesh left running in {}",
                self.dir.path().display()
            );
            let d = std::mem::replace(
                &mut self.dir,
                tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
            );
            let _ = d.keep();
            return;
        }
        let r = self.run(&["down"]);
        if r.code != 0 {
            eprintln!("meshctl down failed: {}{}", r.stdout, r.stderr);
            let id = self.net_id.to_string();
            let _ = self.run(&["down", "--force", "--net-id", &id]);
        }
    }
}

/// Sum of a Prometheus counter over samples whose labels include all of `want`.
pub fn metric_sum(text: &str, name: &str, want: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .filter(|l| {
            want.iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
