//! Where the configuration comes from: a directory of YAML files plus an
//! inventory ([`file`]), or a Kubernetes API server ([`kube`]).

pub mod file;
pub mod kube;
pub mod kube_status;
