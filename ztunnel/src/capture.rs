//! Traffic capture inside a pod's network namespace (in-pod mode).
//!
//! iptables `nat` rules, in two chains of our own so removal is exact:
//!
//! * `ZTUNNEL-OUTPUT` (from `OUTPUT`): TCP leaving the pod is redirected to
//!   the outbound listener (15001), except packets from ztunnel's own
//!   sockets (mark [`ZTUNNEL_MARK`]) and loopback traffic.
//! * `ZTUNNEL-PREROUTING` (from `PREROUTING`): TCP arriving at the pod is
//!   redirected to the plaintext inbound listener (15006), except HBONE
//!   (15008), which ztunnel's listener in the pod receives directly.
//!
//! `REDIRECT` keeps the original destination available through
//! `SO_ORIGINAL_DST`. The pod's processes are never touched: only its
//! namespace's netfilter tables change.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::netns::{Netns, NetnsError, ZTUNNEL_MARK};

const OUT_CHAIN: &str = "ZTUNNEL-OUTPUT";
const PRE_CHAIN: &str = "ZTUNNEL-PREROUTING";

/// Errors installing or removing capture rules.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// Could not run in the namespace.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// iptables failed.
    #[error("iptables-restore in {netns} failed: {msg} (is iptables installed and are we root?)")]
    Iptables {
        /// Namespace path.
        netns: String,
        /// stderr or spawn error.
        msg: String,
    },
}

/// Listener ports the rules redirect to.
#[derive(Debug, Clone, Copy)]
pub struct CapturePorts {
    /// Outbound capture.
    pub outbound: u16,
    /// Plaintext inbound.
    pub inbound_plaintext: u16,
    /// HBONE (left alone).
    pub hbone: u16,
}

/// The `iptables-restore --noflush` input that installs capture.
pub fn rules(ports: CapturePorts) -> String {
    format!(
        "*nat\n\
         :{PRE_CHAIN} - [0:0]\n\
         :{OUT_CHAIN} - [0:0]\n\
         -A PREROUTING -j {PRE_CHAIN}\n\
         -A OUTPUT -j {OUT_CHAIN}\n\
         -A {PRE_CHAIN} -p tcp --dport {hbone} -j RETURN\n\
         -A {PRE_CHAIN} -i lo -j RETURN\n\
         -A {PRE_CHAIN} -p tcp -j REDIRECT --to-ports {inbound}\n\
         -A {OUT_CHAIN} -m mark --mark {mark:#x}/0xfff -j RETURN\n\
         -A {OUT_CHAIN} -o lo -j RETURN\n\
         -A {OUT_CHAIN} -p tcp -j REDIRECT --to-ports {outbound}\n\
         COMMIT\n",
        hbone = ports.hbone,
        inbound = ports.inbound_plaintext,
        outbound = ports.outbound,
        mark = ZTUNNEL_MARK,
    )
}

/// Installs capture in `ns` (replacing any previous rules of ours).
pub fn install(ns: &Netns, ports: CapturePorts) -> Result<(), CaptureError> {
    uninstall(ns)?;
    let input = rules(ports);
    let path = ns.path().display().to_string();
    ns.run(move || restore(&input))?
        .map_err(|msg| CaptureError::Iptables { netns: path, msg })
}

/// Removes our rules from `ns` (no-op when absent).
pub fn uninstall(ns: &Netns) -> Result<(), CaptureError> {
    ns.run(|| {
        for (parent, chain) in [("PREROUTING", PRE_CHAIN), ("OUTPUT", OUT_CHAIN)] {
            // Remove every jump (there may be duplicates after a crash).
            while iptables(&["-t", "nat", "-D", parent, "-j", chain]) {}
            iptables(&["-t", "nat", "-F", chain]);
            iptables(&["-t", "nat", "-X", chain]);
        }
    })?;
    Ok(())
}

/// Are our rules present in `ns`?
pub fn installed(ns: &Netns) -> Result<bool, CaptureError> {
    Ok(ns.run(|| iptables(&["-t", "nat", "-S", OUT_CHAIN]))?)
}

fn iptables(args: &[&str]) -> bool {
    Command::new("iptables")
        .arg("-w")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn restore(input: &str) -> Result<(), String> {
    let mut child = Command::new("iptables-restore")
        .args(["-w", "--noflush"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}
