//! Parsers for the single-value keys of the legacy ConfigMap: `watch-namespace`,
//! `service-account`, `expiring-threshold`, `rrsa`, `webhook-configuration`, `notify-email` and
//! `acr-api-version`.

use std::time::Duration;

use serde_yaml::Value;

use super::{DEFAULT_TIMEOUT_SECONDS, Warning, error::TranslateError, go_duration, key};
use crate::api::{
    NamespaceSelection, ServiceAccountSelection, duration,
    validation::{is_dns_label, is_dns_subdomain},
};

/// Splits a comma-separated list, trimming blanks and dropping empty parts.
fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Removes repeated entries, keeping the first, and warns about them.
fn dedup(key_name: &str, names: Vec<String>, warnings: &mut Vec<Warning>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for n in names {
        if out.contains(&n) {
            warnings.push(Warning::new(
                key_name,
                format!("{n:?} is listed twice; kept once"),
            ));
        } else {
            out.push(n);
        }
    }
    out
}

/// `watch-namespace`: `all`, or comma-separated namespace names. Unset means `default`.
pub(super) fn watch_namespace(
    value: Option<&str>,
    warnings: &mut Vec<Warning>,
) -> Result<NamespaceSelection, TranslateError> {
    let k = key::WATCH_NAMESPACE;
    let names = value.map(split_list).unwrap_or_default();
    if names.is_empty() {
        warnings.push(Warning::new(
            k,
            "not set: the legacy default, namespace \"default\" only, was used",
        ));
        return Ok(NamespaceSelection {
            names: Some(vec!["default".to_owned()]),
            ..Default::default()
        });
    }
    if names.iter().any(|n| n.eq_ignore_ascii_case("all")) {
        if names.len() > 1 {
            return Err(TranslateError::InvalidValue {
                key: k.to_owned(),
                line: None,
                field: k.to_owned(),
                message: format!(
                    "{:?} mixes \"all\" with namespace names; write either all or a list of names",
                    value.unwrap_or_default().trim()
                ),
            });
        }
        warnings.push(Warning::new(
            k,
            "\"all\" selects every namespace, including kube-system and other system namespaces, as the legacy helper did; consider adding namespaces.exclude to the binding",
        ));
        return Ok(NamespaceSelection {
            all: Some(true),
            ..Default::default()
        });
    }
    let names = dedup(k, names, warnings);
    if let Some(bad) = names.iter().find(|n| !is_dns_label(n)) {
        return Err(TranslateError::InvalidValue {
            key: k.to_owned(),
            line: None,
            field: k.to_owned(),
            message: format!(
                "{bad:?} is not a namespace name (lower-case letters, digits and '-', at most 63 characters)"
            ),
        });
    }
    Ok(NamespaceSelection {
        names: Some(names),
        ..Default::default()
    })
}

/// `service-account`: `*` for all, or comma-separated names. Unset means `default`, which is
/// also the controller's default, so nothing is written.
pub(super) fn service_account(
    value: Option<&str>,
    warnings: &mut Vec<Warning>,
) -> Result<Option<ServiceAccountSelection>, TranslateError> {
    let k = key::SERVICE_ACCOUNT;
    let names = value.map(split_list).unwrap_or_default();
    if names.is_empty() {
        return Ok(None);
    }
    if names.iter().any(|n| n == "*") {
        if names.len() > 1 {
            warnings.push(Warning::new(
                k,
                format!(
                    "\"*\" already selects every ServiceAccount; the names next to it ({}) add nothing",
                    names.iter().filter(|n| *n != "*").cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        return Ok(Some(ServiceAccountSelection {
            all: Some(true),
            ..Default::default()
        }));
    }
    let names: Vec<String> = names
        .into_iter()
        .map(|n| {
            // The ACK documentation writes the default as "Default"; ServiceAccount names are
            // lower-case, so it can only mean "default".
            if n != "default" && n.eq_ignore_ascii_case("default") {
                warnings.push(Warning::new(
                    k,
                    format!("{n:?} read as \"default\" (ServiceAccount names are lower-case)"),
                ));
                "default".to_owned()
            } else {
                n
            }
        })
        .collect();
    let names = dedup(k, names, warnings);
    if let Some(bad) = names.iter().find(|n| !is_dns_subdomain(n)) {
        return Err(TranslateError::InvalidValue {
            key: k.to_owned(),
            line: None,
            field: k.to_owned(),
            message: format!(
                "{bad:?} is not a ServiceAccount name; use \"*\" for all ServiceAccounts or lower-case names separated by commas"
            ),
        });
    }
    Ok(Some(ServiceAccountSelection {
        names: Some(names),
        ..Default::default()
    }))
}

/// `expiring-threshold`: a Go duration such as `15m`. Returns the API form and its length.
pub(super) fn expiring_threshold(
    value: Option<&str>,
) -> Result<Option<(String, Duration)>, TranslateError> {
    let k = key::EXPIRING_THRESHOLD;
    let Some(raw) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let invalid = |message: String| TranslateError::InvalidValue {
        key: k.to_owned(),
        line: None,
        field: k.to_owned(),
        message,
    };
    let nanos = go_duration::parse(raw)
        .map_err(|e| invalid(format!("{e}; write a duration such as 15m or 1h")))?;
    if nanos == 0 {
        return Err(invalid(format!(
            "{raw:?} is zero; it must be longer than 0s"
        )));
    }
    if nanos % 1_000_000_000 != 0 {
        return Err(invalid(format!("{raw:?} is not a whole number of seconds")));
    }
    let d = Duration::from_secs(u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX));
    Ok(Some((duration::format(d), d)))
}

/// Reads a small YAML document held in a key (`rrsa`, `webhook-configuration`).
fn yaml_mapping(k: &str, value: &str) -> Result<Option<serde_yaml::Mapping>, TranslateError> {
    match serde_yaml::from_str::<Value>(value) {
        Ok(Value::Null) => Ok(None),
        Ok(Value::Mapping(m)) => Ok(Some(m)),
        Ok(_) => Err(TranslateError::WrongType {
            key: k.to_owned(),
            line: Some(1),
            field: k.to_owned(),
            message: "expected YAML fields such as \"enable: true\"".to_owned(),
        }),
        Err(e) => Err(TranslateError::Yaml {
            key: k.to_owned(),
            line: e.location().map(|l| l.line()),
            message: e.to_string(),
        }),
    }
}

/// Line of `field:` inside a small YAML value, for messages.
pub(super) fn line_of(text: &str, field: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let l = l.trim_start().trim_start_matches("- ");
            l.starts_with(&format!("{field}:")) || l.starts_with(&format!("\"{field}\":"))
        })
        .map(|i| i + 1)
}

fn field_name(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

fn expect_bool(k: &str, text: &str, field: &str, v: &Value) -> Result<bool, TranslateError> {
    v.as_bool().ok_or_else(|| TranslateError::WrongType {
        key: k.to_owned(),
        line: line_of(text, field),
        field: field.to_owned(),
        message: "expected true or false (unquoted)".to_owned(),
    })
}

/// `rrsa`: `enable: true` turns on RRSA for entries that carry `rrsaRoleARN`.
pub(super) fn rrsa(value: Option<&str>) -> Result<bool, TranslateError> {
    let k = key::RRSA;
    let Some(text) = value else { return Ok(false) };
    let Some(map) = yaml_mapping(k, text)? else {
        return Ok(false);
    };
    let mut enabled = false;
    for (name, v) in &map {
        let name = field_name(name);
        match name.as_str() {
            "enable" => enabled = expect_bool(k, text, &name, v)?,
            _ => {
                return Err(TranslateError::UnknownField {
                    key: k.to_owned(),
                    line: line_of(text, &name),
                    suggestion: super::error::suggest(&name, &["enable"]),
                    field: name,
                });
            }
        }
    }
    Ok(enabled)
}

/// `webhook-configuration`: `enable`, `failure-policy`, `timeout-seconds`. Returns whether the
/// webhook is enabled (bindings then get `injectOnCreate: true`). The failure policy and the
/// timeout are not part of any binding: they are the chart's `webhook.failurePolicy` and
/// `webhook.timeoutSeconds`, so a value other than the chart's default becomes a warning that
/// names the Helm value to set.
pub(super) fn webhook_configuration(
    value: Option<&str>,
    warnings: &mut Vec<Warning>,
) -> Result<bool, TranslateError> {
    let k = key::WEBHOOK_CONFIGURATION;
    let Some(text) = value else { return Ok(false) };
    let Some(map) = yaml_mapping(k, text)? else {
        return Ok(false);
    };
    const FIELDS: [&str; 3] = ["enable", "failure-policy", "timeout-seconds"];
    let mut enabled = false;
    for (name, v) in &map {
        let name = field_name(name);
        let line = line_of(text, &name);
        match name.as_str() {
            "enable" => enabled = expect_bool(k, text, &name, v)?,
            "failure-policy" => match v.as_str() {
                Some("Ignore") => {}
                Some("Fail") => warnings.push(Warning::new(
                    k,
                    "failure-policy Fail: set the Helm value webhook.failurePolicy=Fail to keep it; the chart's default Ignore lets ServiceAccounts be created while the webhook is down, and the reconciler adds the Secret to them right after",
                )),
                _ => {
                    return Err(TranslateError::InvalidValue {
                        key: k.to_owned(),
                        line,
                        field: name,
                        message: "expected Ignore or Fail".to_owned(),
                    });
                }
            },
            "timeout-seconds" => {
                let secs = v
                    .as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()));
                match secs {
                    Some(DEFAULT_TIMEOUT_SECONDS) => {}
                    Some(s @ 1..=30) => warnings.push(Warning::new(
                        k,
                        format!("timeout-seconds {s}: set the Helm value webhook.timeoutSeconds={s} to keep it (the chart's default is {DEFAULT_TIMEOUT_SECONDS})"),
                    )),
                    _ => {
                        return Err(TranslateError::InvalidValue {
                            key: k.to_owned(),
                            line,
                            field: name,
                            message: "expected a whole number of seconds from 1 to 30".to_owned(),
                        });
                    }
                }
            }
            _ => {
                return Err(TranslateError::UnknownField {
                    key: k.to_owned(),
                    line,
                    suggestion: super::error::suggest(&name, &FIELDS),
                    field: name,
                });
            }
        }
    }
    Ok(enabled)
}

/// `notify-email`: obsolete; only a warning.
pub(super) fn notify_email(value: Option<&str>, warnings: &mut Vec<Warning>) {
    if value.is_some_and(|v| !v.trim().is_empty()) {
        warnings.push(Warning::new(
            key::NOTIFY_EMAIL,
            "obsolete and ignored: the controller reports through conditions, Events and Prometheus metrics; alert on those instead",
        ));
    }
}

/// `acr-api-version`: the controller picks the API per registry; only a warning.
pub(super) fn acr_api_version(value: Option<&str>, warnings: &mut Vec<Warning>) {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return;
    };
    let known = matches!(v, "2018-12-01" | "2016-06-07");
    let note = if known {
        String::new()
    } else {
        format!(" ({v:?} is not a known ACR API version)")
    };
    warnings.push(Warning::new(
        key::ACR_API_VERSION,
        format!("ignored{note}: the controller uses the 2018-12-01 API for Enterprise Edition instances and the 2016-06-07 API for Personal Edition"),
    ));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn watch_namespace_forms() {
        let mut w = vec![];
        let all = watch_namespace(Some("all"), &mut w).unwrap();
        assert_eq!(all.all, Some(true));
        assert!(w[0].message.contains("kube-system"));
        let upper = watch_namespace(Some("ALL"), &mut vec![]).unwrap();
        assert_eq!(upper.all, Some(true));
        let list = watch_namespace(Some(" prod, dev ,,prod"), &mut w).unwrap();
        assert_eq!(list.names, Some(vec!["prod".to_owned(), "dev".to_owned()]));
        assert!(w.iter().any(|w| w.message.contains("twice")));
        let mut w = vec![];
        let unset = watch_namespace(None, &mut w).unwrap();
        assert_eq!(unset.names, Some(vec!["default".to_owned()]));
        assert_eq!(w.len(), 1);
        assert!(watch_namespace(Some("all,prod"), &mut vec![]).is_err());
        let e = watch_namespace(Some("prod,Dev_1"), &mut vec![]).unwrap_err();
        assert!(e.to_string().contains("Dev_1"), "{e}");
    }

    #[test]
    fn service_account_forms() {
        let mut w = vec![];
        assert_eq!(service_account(None, &mut w).unwrap(), None);
        let star = service_account(Some("*"), &mut w).unwrap().unwrap();
        assert_eq!(star.all, Some(true));
        let list = service_account(Some("default, builder"), &mut w)
            .unwrap()
            .unwrap();
        assert_eq!(
            list.names,
            Some(vec!["default".to_owned(), "builder".to_owned()])
        );
        assert!(w.is_empty());
        let capital = service_account(Some("Default"), &mut w).unwrap().unwrap();
        assert_eq!(capital.names, Some(vec!["default".to_owned()]));
        assert_eq!(w.len(), 1);
        let mixed = service_account(Some("default,*"), &mut w).unwrap().unwrap();
        assert_eq!(mixed.all, Some(true));
        assert_eq!(w.len(), 2);
        assert!(service_account(Some("Builder_1"), &mut vec![]).is_err());
    }

    #[test]
    fn expiring_threshold_forms() {
        assert_eq!(expiring_threshold(None).unwrap(), None);
        assert_eq!(
            expiring_threshold(Some("15m")).unwrap(),
            Some(("15m".to_owned(), Duration::from_secs(900)))
        );
        assert_eq!(expiring_threshold(Some("15m0s")).unwrap().unwrap().0, "15m");
        assert_eq!(expiring_threshold(Some("0.5h")).unwrap().unwrap().0, "30m");
        for bad in ["15", "0s", "1500ms", "fifteen minutes", "-5m"] {
            let e = expiring_threshold(Some(bad)).unwrap_err();
            assert_eq!(e.key(), "expiring-threshold", "{bad}");
        }
    }

    #[test]
    fn rrsa_forms() {
        assert!(!rrsa(None).unwrap());
        assert!(rrsa(Some("enable: true\n")).unwrap());
        assert!(!rrsa(Some("enable: false")).unwrap());
        assert!(!rrsa(Some("")).unwrap());
        let quoted = rrsa(Some("enable: \"true\"")).unwrap_err();
        assert_eq!(quoted.reason(), "WrongType");
        let typo = rrsa(Some("enabled: true")).unwrap_err();
        assert!(
            typo.to_string().contains("did you mean \"enable\""),
            "{typo}"
        );
        let broken = rrsa(Some("enable: [true")).unwrap_err();
        assert_eq!(broken.reason(), "InvalidYaml");
    }

    #[test]
    fn webhook_configuration_forms() {
        let mut w = vec![];
        assert!(
            webhook_configuration(
                Some("enable: true\nfailure-policy: Ignore\ntimeout-seconds: 5\n"),
                &mut w
            )
            .unwrap()
        );
        assert!(w.is_empty());
        assert!(
            webhook_configuration(
                Some("enable: true\nfailure-policy: Fail\ntimeout-seconds: 15"),
                &mut w
            )
            .unwrap()
        );
        assert_eq!(w.len(), 2);
        assert!(
            w[0].to_string().contains("webhook.failurePolicy=Fail"),
            "{}",
            w[0]
        );
        assert!(
            w[1].to_string().contains("webhook.timeoutSeconds=15"),
            "{}",
            w[1]
        );
        let e =
            webhook_configuration(Some("enable: true\ntimeout-seconds: 90"), &mut w).unwrap_err();
        assert_eq!(e.line(), Some(2));
        let e =
            webhook_configuration(Some("enable: true\nfailurePolicy: Ignore"), &mut w).unwrap_err();
        assert!(e.to_string().contains("failure-policy"), "{e}");
    }

    #[test]
    fn informational_keys_only_warn() {
        let mut w = vec![];
        notify_email(Some("ops@example.com"), &mut w);
        acr_api_version(Some("2018-12-01"), &mut w);
        acr_api_version(Some("v9"), &mut w);
        assert_eq!(w.len(), 3);
        assert!(w[2].message.contains("not a known"));
    }
}
