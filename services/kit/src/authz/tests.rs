use super::*;

/// The policy of the README's example: health and reflection for everyone, the bank for users,
/// interest for the clock (the time service) only, and nothing at all for a frozen user. The
/// format has no negation, so "ApplyInterest for no one but the clock" is a deny for every user
/// plus an allow for the clock.
const SAMPLE: &str = r#"{
  "name": "township-bank",
  "deny_rules": [
    {
      "name": "frozen_users",
      "source": {"principals": ["spiffe://township/user/mallory"]}
    },
    {
      "name": "interest_only_by_the_clock",
      "source": {"principals": ["spiffe://township/user/*"]},
      "request": {"paths": ["/township.bank.v1.BankService/ApplyInterest"]}
    }
  ],
  "allow_rules": [
    {
      "name": "health_and_reflection",
      "request": {"paths": ["/grpc.health.v1.Health/*", "/grpc.reflection.*"]}
    },
    {
      "name": "users_bank",
      "source": {"principals": ["spiffe://township/user/*"]},
      "request": {"paths": ["/township.bank.v1.BankService/*"]}
    },
    {
      "name": "clock_applies_interest",
      "source": {"principals": ["spiffe://township/time"]},
      "request": {"paths": ["/township.bank.v1.BankService/ApplyInterest"]}
    }
  ]
}"#;

const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";
const REFLECTION: &str = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
const TRANSFER: &str = "/township.bank.v1.BankService/Transfer";
const APPLY_INTEREST: &str = "/township.bank.v1.BankService/ApplyInterest";

fn policy(json: &str) -> Policy {
    Policy::parse(json).unwrap_or_else(|e| panic!("{e}\n{json}"))
}

/// A policy whose only rule is an allow rule with these fields (besides its name).
fn allowing(fields: &str) -> Policy {
    policy(&format!(
        r#"{{"name": "t", "allow_rules": [{{"name": "r", {fields}}}]}}"#
    ))
}

fn error(json: &str) -> String {
    match Policy::parse(json) {
        Ok(policy) => panic!("accepted: {policy:?}"),
        Err(e) => e.to_string(),
    }
}

/// The error for a policy whose only allow rule has this `request`.
fn request_error(request: &str) -> String {
    error(&format!(
        r#"{{"name": "t", "allow_rules": [{{"name": "r", "request": {request}}}]}}"#
    ))
}

fn peer(uris: &[&str], dns: &[&str], subject: &str) -> Peer {
    Peer {
        uris: uris.iter().map(|s| s.to_string()).collect(),
        dns: dns.iter().map(|s| s.to_string()).collect(),
        subject: subject.to_owned(),
    }
}

fn user(name: &str) -> Peer {
    peer(&[&format!("spiffe://township/user/{name}")], &[], "")
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    map
}

fn decide_with(policy: &Policy, peer: Option<&Peer>, path: &str, headers: &HeaderMap) -> Decision {
    policy.decide(&Subject {
        peer,
        path,
        headers,
    })
}

fn decide(policy: &Policy, peer: Option<&Peer>, path: &str) -> Decision {
    decide_with(policy, peer, path, &HeaderMap::new())
}

fn allows(policy: &Policy, peer: Option<&Peer>, path: &str) -> bool {
    decide(policy, peer, path) == Decision::Allow
}

fn denied_by(rule: &str) -> Decision {
    Decision::Deny {
        reason: DenyReason::DenyRule(Arc::from(rule)),
    }
}

const NO_ALLOW_RULE: Decision = Decision::Deny {
    reason: DenyReason::NoAllowRule,
};

// The sample policy.

#[test]
fn the_sample_policy_lets_a_plaintext_caller_reach_health_and_reflection_and_nothing_else() {
    let sample = policy(SAMPLE);
    assert_eq!(sample.name(), "township-bank");
    assert_eq!(decide(&sample, None, HEALTH_CHECK), Decision::Allow);
    assert_eq!(decide(&sample, None, REFLECTION), Decision::Allow);
    assert_eq!(decide(&sample, None, TRANSFER), NO_ALLOW_RULE);
    assert_eq!(decide(&sample, None, APPLY_INTEREST), NO_ALLOW_RULE);
    // The health prefix is the service's, not any path that starts like it.
    assert_eq!(
        decide(&sample, None, "/grpc.health.v1.HealthX/Check"),
        NO_ALLOW_RULE
    );
}

#[test]
fn the_sample_policy_lets_users_bank_but_not_apply_interest() {
    let sample = policy(SAMPLE);
    let alice = user("alice");
    assert_eq!(decide(&sample, Some(&alice), TRANSFER), Decision::Allow);
    assert_eq!(decide(&sample, Some(&alice), HEALTH_CHECK), Decision::Allow);
    assert_eq!(
        decide(&sample, Some(&alice), APPLY_INTEREST),
        denied_by("interest_only_by_the_clock")
    );
    assert_eq!(
        decide(
            &sample,
            Some(&alice),
            "/township.lock.v1.LockService/Acquire"
        ),
        NO_ALLOW_RULE
    );
}

#[test]
fn the_sample_policy_lets_the_clock_apply_interest_but_not_transfer() {
    let sample = policy(SAMPLE);
    let clock = peer(&["spiffe://township/time"], &["time", "localhost"], "");
    assert_eq!(
        decide(&sample, Some(&clock), APPLY_INTEREST),
        Decision::Allow
    );
    assert_eq!(decide(&sample, Some(&clock), TRANSFER), NO_ALLOW_RULE);
}

#[test]
fn the_sample_policy_denies_a_frozen_user_everything_even_health() {
    let sample = policy(SAMPLE);
    let mallory = user("mallory");
    for path in [HEALTH_CHECK, TRANSFER, APPLY_INTEREST] {
        assert_eq!(
            decide(&sample, Some(&mallory), path),
            denied_by("frozen_users"),
            "{path}"
        );
    }
    assert_eq!(
        decide(&sample, Some(&user("bob")), HEALTH_CHECK),
        Decision::Allow
    );
}

#[test]
fn the_first_matching_deny_rule_is_named_and_deny_rules_win_over_allow_rules() {
    let both = policy(
        r#"{"name": "t",
            "deny_rules": [{"name": "no_transfer", "request": {"paths": ["*/Transfer"]}},
                           {"name": "no_bank", "request": {"paths": ["/township.bank.*"]}}],
            "allow_rules": [{"name": "all"}]}"#,
    );
    assert_eq!(decide(&both, None, TRANSFER), denied_by("no_transfer"));
    assert_eq!(decide(&both, None, APPLY_INTEREST), denied_by("no_bank"));
    assert_eq!(decide(&both, None, HEALTH_CHECK), Decision::Allow);
}

#[test]
fn a_deny_reason_reads_as_which_list_decided() {
    assert_eq!(
        DenyReason::DenyRule(Arc::from("frozen_users")).to_string(),
        "deny rule frozen_users matched"
    );
    assert_eq!(DenyReason::NoAllowRule.to_string(), "no allow rule matched");
}

// Patterns.

#[test]
fn a_lone_star_matches_any_non_empty_text_but_not_the_empty_string() {
    assert!(Pattern::new("*").matches(b"x"));
    assert!(Pattern::new("*").matches(b"/any/path"));
    assert!(!Pattern::new("*").matches(b""));
}

#[test]
fn a_trailing_star_is_a_prefix_and_a_leading_star_a_suffix() {
    let prefix = Pattern::new("spiffe://township/user/*");
    assert!(prefix.matches(b"spiffe://township/user/alice"));
    assert!(prefix.matches(b"spiffe://township/user/"));
    assert!(!prefix.matches(b"spiffe://township/bank"));
    let suffix = Pattern::new("*.township.example");
    assert!(suffix.matches(b"bank.township.example"));
    assert!(!suffix.matches(b"bank.township.example.evil"));
}

#[test]
fn a_star_elsewhere_is_literal_and_a_trailing_star_wins_over_a_leading_one() {
    let middle = Pattern::new("spiffe://abc.*.com");
    assert_eq!(middle, Pattern::Exact("spiffe://abc.*.com".into()));
    assert!(middle.matches(b"spiffe://abc.*.com"));
    assert!(!middle.matches(b"spiffe://abc.x.com"));
    let both = Pattern::new("*abc*");
    assert_eq!(both, Pattern::Prefix("*abc".into()));
    assert!(both.matches(b"*abcdef"));
    assert!(!both.matches(b"xabcx"));
    assert_eq!(Pattern::new("**"), Pattern::Prefix("*".into()));
    assert_eq!(Pattern::new(""), Pattern::Exact(String::new()));
}

#[test]
fn an_exact_pattern_matches_only_the_whole_text() {
    let exact = Pattern::new("/a.B/C");
    assert!(exact.matches(b"/a.B/C"));
    assert!(!exact.matches(b"/a.B/CD"));
    assert!(!exact.matches(b"/a.b/c"));
}

// Principals.

#[test]
fn a_plaintext_caller_matches_no_listed_principal_not_even_star() {
    let any_tls = allowing(r#""source": {"principals": ["*"]}"#);
    assert_eq!(decide(&any_tls, None, TRANSFER), NO_ALLOW_RULE);
    assert_eq!(
        decide(&any_tls, Some(&user("alice")), TRANSFER),
        Decision::Allow
    );
    // Nor as a deny: a listed principal can't deny a plaintext caller either.
    let deny_any_tls = policy(
        r#"{"name": "t", "deny_rules": [{"name": "tls", "source": {"principals": ["*"]}}],
            "allow_rules": [{"name": "all"}]}"#,
    );
    assert_eq!(decide(&deny_any_tls, None, TRANSFER), Decision::Allow);
    assert_eq!(
        decide(&deny_any_tls, Some(&user("alice")), TRANSFER),
        denied_by("tls")
    );
}

#[test]
fn an_absent_or_empty_source_matches_everyone_plaintext_included() {
    for source in ["", r#""source": {},"#, r#""source": {"principals": []},"#] {
        let open = allowing(&format!(
            r#"{source} "request": {{"paths": ["{TRANSFER}"]}}"#
        ));
        assert!(allows(&open, None, TRANSFER), "{source}");
        assert!(allows(&open, Some(&Peer::default()), TRANSFER), "{source}");
        assert!(allows(&open, Some(&user("alice")), TRANSFER), "{source}");
        assert!(!allows(&open, None, APPLY_INTEREST), "{source}");
    }
}

#[test]
fn a_tls_caller_without_a_certificate_matches_the_empty_principal_but_not_star() {
    let empty = allowing(r#""source": {"principals": [""]}"#);
    assert!(allows(&empty, Some(&Peer::default()), TRANSFER));
    assert!(!allows(&empty, None, TRANSFER));
    assert!(!allows(&empty, Some(&user("alice")), TRANSFER));
    let star = allowing(r#""source": {"principals": ["*"]}"#);
    assert!(!allows(&star, Some(&Peer::default()), TRANSFER));
    // grpc-go's "any TLS caller, certificate or not".
    let any_tls = allowing(r#""source": {"principals": ["*", ""]}"#);
    assert!(allows(&any_tls, Some(&Peer::default()), TRANSFER));
    assert!(allows(&any_tls, Some(&user("alice")), TRANSFER));
    assert!(!allows(&any_tls, None, TRANSFER));
}

#[test]
fn any_uri_san_may_match_and_dns_sans_are_then_never_consulted() {
    let by_dns = allowing(r#""source": {"principals": ["bank"]}"#);
    let by_uri = allowing(r#""source": {"principals": ["spiffe://township/bank"]}"#);
    let bank = peer(
        &["spiffe://other/x", "spiffe://township/bank"],
        &["bank", "localhost"],
        "CN=bank",
    );
    assert!(!allows(&by_dns, Some(&bank), TRANSFER));
    assert!(allows(&by_uri, Some(&bank), TRANSFER));
    let by_subject = allowing(r#""source": {"principals": ["CN=bank"]}"#);
    assert!(!allows(&by_subject, Some(&bank), TRANSFER));
}

#[test]
fn any_dns_san_may_match_when_there_is_no_uri_san_and_the_subject_is_then_never_consulted() {
    let by_dns = allowing(r#""source": {"principals": ["localhost"]}"#);
    let host = peer(&[], &["bank", "localhost"], "CN=bank");
    assert!(allows(&by_dns, Some(&host), TRANSFER));
    assert!(!allows(
        &by_dns,
        Some(&peer(&[], &["bank"], "CN=localhost")),
        TRANSFER
    ));
    let by_subject = allowing(r#""source": {"principals": ["CN=bank"]}"#);
    assert!(!allows(&by_subject, Some(&host), TRANSFER));
}

#[test]
fn the_subject_is_matched_only_when_there_is_no_san_at_all() {
    let by_subject = allowing(r#""source": {"principals": ["CN=alice,O=Township"]}"#);
    assert!(allows(
        &by_subject,
        Some(&peer(&[], &[], "CN=alice,O=Township")),
        TRANSFER
    ));
    assert!(!allows(
        &by_subject,
        Some(&peer(&[], &[], "CN=bob,O=Township")),
        TRANSFER
    ));
    assert!(!allows(&by_subject, None, TRANSFER));
}

#[test]
fn principals_are_ored_and_anded_with_the_request() {
    let two = allowing(
        r#""source": {"principals": ["spiffe://township/user/alice", "spiffe://township/user/bob"]},
           "request": {"paths": ["/township.bank.v1.BankService/Transfer"]}"#,
    );
    assert!(allows(&two, Some(&user("alice")), TRANSFER));
    assert!(allows(&two, Some(&user("bob")), TRANSFER));
    assert!(!allows(&two, Some(&user("carol")), TRANSFER));
    assert!(!allows(&two, Some(&user("alice")), APPLY_INTEREST));
}

// Paths.

#[test]
fn paths_are_ored_and_matched_against_the_full_method() {
    let two = allowing(
        r#""request": {"paths": ["/township.bank.v1.BankService/Transfer",
                                  "/township.bank.v1.BankService/Get*"]}"#,
    );
    assert!(allows(&two, None, TRANSFER));
    assert!(allows(
        &two,
        None,
        "/township.bank.v1.BankService/GetBalance"
    ));
    assert!(!allows(&two, None, APPLY_INTEREST));
    // The method name alone, or the service without its package, is not the path.
    let short = allowing(r#""request": {"paths": ["Transfer", "BankService/*"]}"#);
    assert!(!allows(&short, None, TRANSFER));
    assert!(allows(&short, None, "Transfer"));
}

#[test]
fn an_absent_or_empty_request_matches_every_method() {
    for request in [
        "",
        r#", "request": {}"#,
        r#", "request": {"paths": [], "headers": []}"#,
    ] {
        let alice_only = allowing(&format!(
            r#""source": {{"principals": ["*/alice"]}}{request}"#
        ));
        assert!(
            allows(&alice_only, Some(&user("alice")), TRANSFER),
            "{request}"
        );
        assert!(
            allows(&alice_only, Some(&user("alice")), HEALTH_CHECK),
            "{request}"
        );
        assert!(
            !allows(&alice_only, Some(&user("bob")), TRANSFER),
            "{request}"
        );
    }
}

// Headers.

#[test]
fn header_entries_are_anded_and_each_entrys_values_ored() {
    let rule = allowing(
        r#""request": {"headers": [
            {"key": "x-township-role", "values": ["teller", "manager"]},
            {"key": "x-township-branch", "values": ["north*"]}
        ]}"#,
    );
    let call = |pairs: &[(&str, &str)]| decide_with(&rule, None, TRANSFER, &headers(pairs));
    assert_eq!(
        call(&[
            ("x-township-role", "teller"),
            ("x-township-branch", "north-1")
        ]),
        Decision::Allow
    );
    assert_eq!(
        call(&[
            ("x-township-role", "manager"),
            ("x-township-branch", "north")
        ]),
        Decision::Allow
    );
    assert_eq!(
        call(&[
            ("x-township-role", "clerk"),
            ("x-township-branch", "north-1")
        ]),
        NO_ALLOW_RULE
    );
    assert_eq!(
        call(&[
            ("x-township-role", "teller"),
            ("x-township-branch", "south")
        ]),
        NO_ALLOW_RULE
    );
    assert_eq!(call(&[("x-township-role", "teller")]), NO_ALLOW_RULE);
}

#[test]
fn a_header_with_several_values_is_matched_as_all_of_them_joined_by_commas() {
    let exact = allowing(r#""request": {"headers": [{"key": "x-tag", "values": ["a,b"]}]}"#);
    let first_only = allowing(r#""request": {"headers": [{"key": "x-tag", "values": ["a"]}]}"#);
    let two = headers(&[("x-tag", "a"), ("x-tag", "b")]);
    assert_eq!(decide_with(&exact, None, TRANSFER, &two), Decision::Allow);
    assert_eq!(
        decide_with(&first_only, None, TRANSFER, &two),
        NO_ALLOW_RULE
    );
    let one = headers(&[("x-tag", "a")]);
    assert_eq!(
        decide_with(&first_only, None, TRANSFER, &one),
        Decision::Allow
    );
    assert_eq!(decide_with(&exact, None, TRANSFER, &one), NO_ALLOW_RULE);
}

#[test]
fn a_missing_header_never_matches_not_even_star_and_an_empty_one_matches_only_the_empty_value() {
    let present = allowing(r#""request": {"headers": [{"key": "x-tag", "values": ["*"]}]}"#);
    let empty = allowing(r#""request": {"headers": [{"key": "x-tag", "values": [""]}]}"#);
    let none = HeaderMap::new();
    let blank = headers(&[("x-tag", "")]);
    let set = headers(&[("x-tag", "v")]);
    assert_eq!(decide_with(&present, None, TRANSFER, &none), NO_ALLOW_RULE);
    assert_eq!(decide_with(&present, None, TRANSFER, &blank), NO_ALLOW_RULE);
    assert_eq!(decide_with(&present, None, TRANSFER, &set), Decision::Allow);
    assert_eq!(decide_with(&empty, None, TRANSFER, &none), NO_ALLOW_RULE);
    assert_eq!(decide_with(&empty, None, TRANSFER, &blank), Decision::Allow);
    assert_eq!(decide_with(&empty, None, TRANSFER, &set), NO_ALLOW_RULE);
}

#[test]
fn header_keys_are_lowercased() {
    let rule =
        allowing(r#""request": {"headers": [{"key": "X-Township-Role", "values": ["teller"]}]}"#);
    let teller = headers(&[("x-township-role", "teller")]);
    let clerk = headers(&[("x-township-role", "clerk")]);
    assert_eq!(decide_with(&rule, None, TRANSFER, &teller), Decision::Allow);
    assert_eq!(decide_with(&rule, None, TRANSFER, &clerk), NO_ALLOW_RULE);
}

#[test]
fn paths_and_headers_are_anded_within_a_rule() {
    let rule = allowing(
        r#""request": {"paths": ["/township.bank.v1.BankService/Transfer"],
                       "headers": [{"key": "x-township-role", "values": ["teller"]}]}"#,
    );
    let teller = headers(&[("x-township-role", "teller")]);
    assert_eq!(decide_with(&rule, None, TRANSFER, &teller), Decision::Allow);
    assert_eq!(
        decide_with(&rule, None, APPLY_INTEREST, &teller),
        NO_ALLOW_RULE
    );
    assert_eq!(
        decide_with(&rule, None, TRANSFER, &HeaderMap::new()),
        NO_ALLOW_RULE
    );
}

// Validation.

#[test]
fn a_policy_needs_a_name() {
    assert_eq!(error(r#"{}"#), r#""name" is not present"#);
    assert_eq!(
        error(r#"{"name": "", "allow_rules": [{"name": "r"}]}"#),
        r#""name" is not present"#
    );
    assert_eq!(
        policy(r#"{"name": "n", "allow_rules": [{"name": "r"}]}"#).name(),
        "n"
    );
}

#[test]
fn allow_rules_are_required_and_may_not_be_empty_but_deny_rules_may_be_absent() {
    let missing = r#""allow_rules" is not present"#;
    assert_eq!(error(r#"{"name": "n"}"#), missing);
    assert_eq!(error(r#"{"name": "n", "allow_rules": []}"#), missing);
    assert_eq!(error(r#"{"name": "n", "allow_rules": null}"#), missing);
    assert_eq!(
        error(r#"{"name": "n", "deny_rules": [{"name": "d"}]}"#),
        missing
    );
    let no_deny = policy(r#"{"name": "n", "allow_rules": [{"name": "r"}]}"#);
    assert!(allows(&no_deny, None, TRANSFER));
    let null_deny = policy(r#"{"name": "n", "deny_rules": null, "allow_rules": [{"name": "r"}]}"#);
    assert!(allows(&null_deny, None, TRANSFER));
}

#[test]
fn every_rule_needs_a_name_and_the_error_gives_its_list_and_index() {
    assert_eq!(
        error(r#"{"name": "n", "allow_rules": [{}]}"#),
        r#""allow_rules" 0: "name" is not present"#
    );
    assert_eq!(
        error(r#"{"name": "n", "allow_rules": [{"name": "a"}, {"name": ""}]}"#),
        r#""allow_rules" 1: "name" is not present"#
    );
    assert_eq!(
        error(
            r#"{"name": "n", "deny_rules": [{"name": "d"}, {"source": {}}], "allow_rules": [{}]}"#
        ),
        r#""deny_rules" 1: "name" is not present"#
    );
}

#[test]
fn two_rules_of_one_list_may_not_share_a_name_but_a_deny_and_an_allow_rule_may() {
    assert_eq!(
        error(r#"{"name": "n", "allow_rules": [{"name": "a"}, {"name": "b"}, {"name": "a"}]}"#),
        r#""allow_rules" 2: duplicate "name" a"#
    );
    let same = policy(
        r#"{"name": "n", "deny_rules": [{"name": "a", "request": {"paths": ["/x/*"]}}],
            "allow_rules": [{"name": "a"}]}"#,
    );
    assert_eq!(decide(&same, None, "/x/Y"), denied_by("a"));
    assert_eq!(decide(&same, None, TRANSFER), Decision::Allow);
}

#[test]
fn a_header_needs_a_key_and_at_least_one_value() {
    assert_eq!(
        request_error(r#"{"headers": [{"key": "x-a", "values": ["v"]}, {}]}"#),
        r#""allow_rules" 0: "headers" 1: "key" is not present"#
    );
    assert_eq!(
        request_error(r#"{"headers": [{"key": "", "values": ["v"]}]}"#),
        r#""allow_rules" 0: "headers" 0: "key" is not present"#
    );
    assert_eq!(
        request_error(r#"{"headers": [{"key": "x-a"}]}"#),
        r#""allow_rules" 0: "headers" 0: "values" is not present"#
    );
    assert_eq!(
        request_error(r#"{"headers": [{"key": "x-a", "values": []}]}"#),
        r#""allow_rules" 0: "headers" 0: "values" is not present"#
    );
    allowing(r#""request": {"headers": [{"key": "x-a", "values": [""]}]}"#);
}

#[test]
fn pseudo_grpc_and_hop_by_hop_header_keys_are_unsupported_once_lowercased() {
    for (key, lowered) in [
        (":path", ":path"),
        (":authority", ":authority"),
        (":Method", ":method"),
        ("grpc-timeout", "grpc-timeout"),
        ("GRPC-Status", "grpc-status"),
        ("Host", "host"),
        ("connection", "connection"),
        ("keep-alive", "keep-alive"),
        ("proxy-authenticate", "proxy-authenticate"),
        ("Proxy-Authorization", "proxy-authorization"),
        ("te", "te"),
        ("TE", "te"),
        ("trailer", "trailer"),
        ("transfer-encoding", "transfer-encoding"),
        ("upgrade", "upgrade"),
    ] {
        assert_eq!(
            request_error(&format!(
                r#"{{"headers": [{{"key": "{key}", "values": ["v"]}}]}}"#
            )),
            format!(r#""allow_rules" 0: "headers" 0: unsupported "key" {lowered}"#),
        );
    }
    // The same words inside other names are fine.
    for key in [
        "x-grpc-trace",
        "hosts",
        "x-te",
        "content-type",
        "user-agent",
        "authorization",
    ] {
        allowing(&format!(
            r#""request": {{"headers": [{{"key": "{key}", "values": ["v"]}}]}}"#
        ));
    }
}

#[test]
fn the_unsupported_key_check_also_covers_deny_rules() {
    assert_eq!(
        error(
            r#"{"name": "n",
                "deny_rules": [{"name": "d", "request": {"headers": [{"key": "grpc-x", "values": ["v"]}]}}],
                "allow_rules": [{"name": "a"}]}"#
        ),
        r#""deny_rules" 0: "headers" 0: unsupported "key" grpc-x"#
    );
}

#[test]
fn a_header_key_that_is_not_a_header_name_is_rejected() {
    assert_eq!(
        request_error(r#"{"headers": [{"key": "x role", "values": ["v"]}]}"#),
        r#""allow_rules" 0: "headers" 0: invalid "key" x role: not a header name"#
    );
}

#[test]
fn unknown_fields_are_rejected_at_every_level_and_keys_are_case_sensitive() {
    let cases = [
        (r#"{"random": 123}"#, r#"unknown field "random""#),
        (
            r#"{"Name": "n", "allow_rules": [{"name": "r"}]}"#,
            r#"unknown field "Name""#,
        ),
        (
            r#"{"name": "n", "allow_rules": [{"name": "r", "sources": {}}]}"#,
            r#""allow_rules" 0: unknown field "sources""#,
        ),
        (
            r#"{"name": "n", "allow_rules": [{"name": "r", "source": {"principal": []}}]}"#,
            r#""allow_rules" 0: "source": unknown field "principal""#,
        ),
        (
            r#"{"name": "n", "allow_rules": [{"name": "r", "request": {"path": []}}]}"#,
            r#""allow_rules" 0: "request": unknown field "path""#,
        ),
        (
            r#"{"name": "n", "allow_rules": [{"name": "r", "request": {"headers": [{"key": "k", "value": ["v"]}]}}]}"#,
            r#""allow_rules" 0: "request": "headers" 0: unknown field "value""#,
        ),
    ];
    for (json, problem) in cases {
        assert_eq!(
            error(json),
            format!("failed to unmarshal policy: {problem}")
        );
    }
}

#[test]
fn audit_logging_options_are_accepted_and_ignored() {
    let audited = policy(
        r#"{"name": "n",
            "allow_rules": [{"name": "r", "request": {"paths": ["/a/*"]}}],
            "audit_logging_options": {
              "audit_condition": "ON_DENY",
              "audit_loggers": [{"name": "stdout_logger", "config": {}, "is_optional": false}]
            }}"#,
    );
    assert!(allows(&audited, None, "/a/B"));
    assert!(!allows(&audited, None, "/b/A"));
}

#[test]
fn malformed_json_and_wrong_types_fail_to_unmarshal_before_any_other_check() {
    let cases = [
        (r#"{"name": 123}"#, r#""name": expected a string"#),
        (r#"[]"#, "expected an object"),
        (
            r#"{"name": "n", "allow_rules": {}}"#,
            r#""allow_rules": expected an array"#,
        ),
        (
            r#"{"name": "n", "allow_rules": ["r"]}"#,
            r#""allow_rules" 0: expected an object"#,
        ),
        (
            r#"{"name": "n", "allow_rules": [{"name": "r", "source": {"principals": "*"}}]}"#,
            r#""allow_rules" 0: "source": "principals": expected an array"#,
        ),
        (
            r#"{"name": "n", "allow_rules": [{"name": "r", "request": {"paths": [1]}}]}"#,
            r#""allow_rules" 0: "request": "paths": expected an array of strings"#,
        ),
        // A type error counts even where a check would also fail: decoding comes first.
        (
            r#"{"allow_rules": [{"name": 1}]}"#,
            r#""allow_rules" 0: "name": expected a string"#,
        ),
    ];
    for (json, problem) in cases {
        assert_eq!(
            error(json),
            format!("failed to unmarshal policy: {problem}"),
            "{json}"
        );
    }
    let not_json = error(r#"{"name": "n","#);
    assert!(
        not_json.starts_with("failed to unmarshal policy: "),
        "{not_json}"
    );
    let trailing = error(r#"{"name": "n", "allow_rules": [{"name": "r"}]} {}"#);
    assert!(
        trailing.starts_with("failed to unmarshal policy: "),
        "{trailing}"
    );
}

#[test]
fn a_policy_file_is_read_and_its_errors_name_the_file() {
    let dir = std::env::temp_dir().join(format!("township-authz-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.json");
    std::fs::write(&good, SAMPLE).unwrap();
    let sample = Policy::from_file(&good).unwrap();
    assert!(allows(&sample, Some(&user("alice")), TRANSFER));
    assert!(!allows(&sample, Some(&user("alice")), APPLY_INTEREST));

    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"name": "n"}"#).unwrap();
    let err = Policy::from_file(&bad).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(r#"{}: "allow_rules" is not present"#, bad.display())
    );
    assert!(std::error::Error::source(&err).is_none());

    let missing = dir.join("missing.json");
    let err = Policy::from_file(&missing).unwrap_err();
    assert!(matches!(err, PolicyError::Read { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&format!("{}: ", missing.display())),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
