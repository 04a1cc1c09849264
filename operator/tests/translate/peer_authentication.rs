//! PeerAuthentication modes and their precedence (reference §3).

use crate::support::*;

#[test]
fn reference_3_peer_authentication() {
    let pa = |ns: &str, name: &str, body: &str| {
        format!(
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {body}\n---\n"
        )
    };
    // mesh STRICT: plaintext denied, any mesh identity passes
    let cs = cs_with(&pa("istio-system", "default", "{mtls: {mode: STRICT}}"));
    assert!(!decide(&cs, &conn(None, 80)).is_allowed());
    assert!(decide(&cs, &conn(Some(X), 80)).is_allowed());
    // mesh STRICT + namespace PERMISSIVE ⇒ plaintext allowed
    let cs = cs_with(
        &(pa("istio-system", "default", "{mtls: {mode: STRICT}}")
            + &pa("foo", "ns", "{mtls: {mode: PERMISSIVE}}")),
    );
    assert!(decide(&cs, &conn(None, 80)).is_allowed());
    // workload STRICT + 8080 PERMISSIVE
    let cs = cs_with(&pa(
        "foo",
        "w",
        "{selector: {matchLabels: {app: app}}, mtls: {mode: STRICT}, portLevelMtls: {\"8080\": {mode: PERMISSIVE}}}",
    ));
    assert!(decide(&cs, &conn(None, 8080)).is_allowed());
    match decide(&cs, &conn(None, 9090)) {
        Decision::DeniedBy(p) => assert_eq!(p, "foo/converted_peer_authentication_w"),
        d => panic!("expected deny, got {d:?}"),
    }
    // mesh STRICT + workload DISABLE ⇒ plaintext allowed (ambient)
    let cs = cs_with(
        &(pa("istio-system", "default", "{mtls: {mode: STRICT}}")
            + &pa(
                "foo",
                "w",
                "{selector: {matchLabels: {app: app}}, mtls: {mode: DISABLE}}",
            )),
    );
    assert!(decide(&cs, &conn(None, 80)).is_allowed());
    // PERMISSIVE + 9000 STRICT
    let cs = cs_with(&pa(
        "foo",
        "w",
        "{selector: {matchLabels: {app: app}}, mtls: {mode: PERMISSIVE}, portLevelMtls: {\"9000\": {mode: STRICT}}}",
    ));
    assert!(!decide(&cs, &conn(None, 9000)).is_allowed());
    assert!(decide(&cs, &conn(None, 80)).is_allowed());
    // namespace STRICT, workload UNSET with 8080 PERMISSIVE: merged policy replaces static strict
    let cs = cs_with(
        &(pa("foo", "ns", "{mtls: {mode: STRICT}}")
            + &pa(
                "foo",
                "w",
                "{selector: {matchLabels: {app: app}}, portLevelMtls: {\"8080\": {mode: PERMISSIVE}}}",
            )),
    );
    let t = translate(&cs, &TranslateContext::default());
    let w = t.workloads.iter().find(|w| w.name == "app-0").unwrap();
    assert_eq!(
        w.authorization_policies,
        vec!["foo/converted_peer_authentication_w".to_string()]
    );
    assert!(decide(&cs, &conn(None, 8080)).is_allowed());
    assert!(!decide(&cs, &conn(None, 81)).is_allowed());
}
