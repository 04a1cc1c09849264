//! Kubernetes source (see module docs in the file).
