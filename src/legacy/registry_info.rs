//! `acr-registry-info`: a YAML list, inside a string, of the registries to serve.
//!
//! Fields per entry, as the ACK documentation spells them: `instanceId` (empty for Personal
//! Edition), `regionId`, `domains`, `assumeRoleARN`, `expireDuration`, `rrsaRoleARN`,
//! `rrsaOIDCProviderRoleARN`, and `customAccessKey`/`customAccessKeySecret` (documented for the
//! cross-account AccessKey scenario, not listed in design §5).
//!
//! Where the documented format is loose we accept both forms and say so here:
//! - `domains` is documented as one comma-separated string; a YAML list is accepted too.
//! - `expireDuration` is documented as a number of seconds; a quoted number is accepted too.
//! - Terraform users write the whole value as JSON (`[{"instanceId": ...}]`), valid YAML too.

use serde_yaml::Value;

use super::{Warning, error::TranslateError, error::suggest, key};
use crate::{
    api::validation::{
        is_dns_subdomain, is_instance_id, is_oidc_provider_arn, is_region, is_role_arn,
    },
    sensitive::Sensitive,
};

const FIELDS: [&str; 9] = [
    "instanceId",
    "regionId",
    "domains",
    "assumeRoleARN",
    "expireDuration",
    "rrsaRoleARN",
    "rrsaOIDCProviderRoleARN",
    "customAccessKey",
    "customAccessKeySecret",
];

/// One entry of `acr-registry-info`, checked field by field.
#[derive(Debug, Default)]
pub(super) struct Entry {
    /// Position in the list.
    pub index: usize,
    /// Line where the entry starts, inside the key's value.
    pub line: Option<usize>,
    pub instance_id: Option<String>,
    pub region: Option<String>,
    pub domains: Option<Vec<String>>,
    pub assume_role_arn: Option<String>,
    /// Seconds.
    pub expire_duration: Option<u64>,
    pub rrsa_role_arn: Option<String>,
    pub rrsa_oidc_provider_arn: Option<String>,
    pub access_key: Option<(Sensitive<String>, Sensitive<String>)>,
}

/// Start line (1-based) of each top-level list item, for block-style lists. Flow-style (JSON)
/// lists have none, and messages then go without a line.
fn item_lines(text: &str) -> Vec<usize> {
    let dash_lines: Vec<(usize, usize)> = text
        .lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let trimmed = l.trim_start();
            (trimmed == "-" || trimmed.starts_with("- ")).then(|| (i + 1, l.len() - trimmed.len()))
        })
        .collect();
    let Some(min_indent) = dash_lines.iter().map(|(_, ind)| *ind).min() else {
        return vec![];
    };
    dash_lines
        .into_iter()
        .filter(|(_, ind)| *ind == min_indent)
        .map(|(line, _)| line)
        .collect()
}

/// Line of `field:` within the entry that starts at `start` (up to the next entry).
fn field_line(text: &str, starts: &[usize], index: usize, field: &str) -> Option<usize> {
    let start = *starts.get(index)?;
    let end = starts.get(index + 1).copied().unwrap_or(usize::MAX);
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(n, _)| *n >= start && *n < end)
        .find(|(_, l)| {
            let l = l.trim_start().trim_start_matches("- ").trim_start();
            l.starts_with(&format!("{field}:")) || l.starts_with(&format!("\"{field}\":"))
        })
        .map(|(n, _)| n)
}

struct Ctx<'a> {
    text: &'a str,
    starts: Vec<usize>,
    index: usize,
}

impl Ctx<'_> {
    fn line(&self, field: &str) -> Option<usize> {
        field_line(self.text, &self.starts, self.index, field)
            .or_else(|| self.starts.get(self.index).copied())
    }

    fn field(&self, field: &str) -> String {
        format!("[{}].{field}", self.index)
    }

    fn invalid(&self, field: &str, message: String) -> TranslateError {
        TranslateError::InvalidValue {
            key: key::ACR_REGISTRY_INFO.to_owned(),
            line: self.line(field),
            field: self.field(field),
            message,
        }
    }

    fn wrong_type(&self, field: &str, message: &str) -> TranslateError {
        TranslateError::WrongType {
            key: key::ACR_REGISTRY_INFO.to_owned(),
            line: self.line(field),
            field: self.field(field),
            message: message.to_owned(),
        }
    }

    /// A string field; null and "" count as unset.
    fn string(&self, field: &str, v: &Value) -> Result<Option<String>, TranslateError> {
        match v {
            Value::Null => Ok(None),
            Value::String(s) if s.trim().is_empty() => Ok(None),
            Value::String(s) => Ok(Some(s.trim().to_owned())),
            _ => Err(self.wrong_type(field, "expected a string")),
        }
    }
}

/// Parses the value of `acr-registry-info`. An unset or empty value yields no entries.
pub(super) fn parse(
    text: Option<&str>,
    warnings: &mut Vec<Warning>,
) -> Result<Vec<Entry>, Vec<TranslateError>> {
    let k = key::ACR_REGISTRY_INFO;
    let Some(text) = text else { return Ok(vec![]) };
    let root: Value = serde_yaml::from_str(text).map_err(|e| {
        vec![TranslateError::Yaml {
            key: k.to_owned(),
            line: e.location().map(|l| l.line()),
            message: format!(
                "{e}{}",
                if text.contains("\",\"") {
                    " (write several domains as one string: domains: \"a.com,b.com\")"
                } else {
                    ""
                }
            ),
        }]
    })?;
    let items = match root {
        Value::Null => return Ok(vec![]),
        Value::Sequence(items) => items,
        _ => {
            return Err(vec![TranslateError::WrongType {
                key: k.to_owned(),
                line: Some(1),
                field: k.to_owned(),
                message: "expected a YAML list, one \"- instanceId: ...\" entry per registry"
                    .to_owned(),
            }]);
        }
    };
    let starts = item_lines(text);
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let ctx = Ctx {
            text,
            starts: starts.clone(),
            index,
        };
        match entry(&ctx, item, warnings) {
            Ok(e) => entries.push(e),
            Err(mut errs) => errors.append(&mut errs),
        }
    }
    if errors.is_empty() {
        Ok(entries)
    } else {
        Err(errors)
    }
}

fn entry(
    ctx: &Ctx<'_>,
    item: &Value,
    warnings: &mut Vec<Warning>,
) -> Result<Entry, Vec<TranslateError>> {
    let Value::Mapping(map) = item else {
        return Err(vec![TranslateError::WrongType {
            key: key::ACR_REGISTRY_INFO.to_owned(),
            line: ctx.starts.get(ctx.index).copied(),
            field: format!("[{}]", ctx.index),
            message: "expected fields such as instanceId and regionId".to_owned(),
        }]);
    };
    let mut e = Entry {
        index: ctx.index,
        line: ctx.starts.get(ctx.index).copied(),
        ..Entry::default()
    };
    let mut errors = Vec::new();
    let mut ak_id = None;
    let mut ak_secret = None;
    for (name, v) in map {
        let Some(name) = name.as_str() else {
            errors.push(ctx.wrong_type("?", "field names must be strings"));
            continue;
        };
        let result = match name {
            "instanceId" => ctx.string(name, v).and_then(|id| {
                e.instance_id = id.map(|id| instance_id(ctx, id)).transpose()?;
                Ok(())
            }),
            "regionId" => ctx.string(name, v).and_then(|r| {
                if let Some(r) = &r
                    && !is_region(r)
                {
                    return Err(ctx.invalid(
                        name,
                        format!("{r:?} is not an Alibaba Cloud region id such as cn-hangzhou"),
                    ));
                }
                e.region = r;
                Ok(())
            }),
            "domains" => domains(ctx, v, warnings).map(|d| e.domains = d),
            "assumeRoleARN" => ctx.string(name, v).and_then(|arn| {
                e.assume_role_arn = arn.map(|a| role_arn(ctx, name, a)).transpose()?;
                Ok(())
            }),
            "expireDuration" => expire_duration(ctx, v).map(|d| e.expire_duration = d),
            "rrsaRoleARN" => ctx.string(name, v).and_then(|arn| {
                e.rrsa_role_arn = arn.map(|a| role_arn(ctx, name, a)).transpose()?;
                Ok(())
            }),
            "rrsaOIDCProviderRoleARN" => ctx.string(name, v).and_then(|arn| {
                if let Some(a) = &arn
                    && !is_oidc_provider_arn(a)
                {
                    return Err(ctx.invalid(
                        name,
                        format!("{a:?} is not an OIDC provider ARN such as acs:ram::1234567890123456:oidc-provider/ack-rrsa-c123"),
                    ));
                }
                e.rrsa_oidc_provider_arn = arn;
                Ok(())
            }),
            "customAccessKey" => ctx.string(name, v).map(|s| ak_id = s),
            "customAccessKeySecret" => ctx.string(name, v).map(|s| ak_secret = s),
            other => Err(TranslateError::UnknownField {
                key: key::ACR_REGISTRY_INFO.to_owned(),
                line: ctx.line(other),
                field: ctx.field(other),
                suggestion: suggest(other, &FIELDS),
            }),
        };
        if let Err(err) = result {
            errors.push(err);
        }
    }
    match (ak_id, ak_secret) {
        (Some(id), Some(secret)) => {
            e.access_key = Some((Sensitive::new(id), Sensitive::new(secret)));
        }
        (None, None) => {}
        (Some(_), None) => errors.push(
            ctx.invalid(
                "customAccessKey",
                "customAccessKey is set but customAccessKeySecret is not; set both or neither"
                    .to_owned(),
            ),
        ),
        (None, Some(_)) => errors.push(
            ctx.invalid(
                "customAccessKeySecret",
                "customAccessKeySecret is set but customAccessKey is not; set both or neither"
                    .to_owned(),
            ),
        ),
    }
    if errors.is_empty() {
        Ok(e)
    } else {
        Err(errors)
    }
}

fn instance_id(ctx: &Ctx<'_>, id: String) -> Result<String, TranslateError> {
    if id.contains(',') {
        return Err(ctx.invalid(
            "instanceId",
            format!("{id:?} lists several instances; write one list entry per instance"),
        ));
    }
    if !is_instance_id(&id) {
        return Err(ctx.invalid(
            "instanceId",
            format!("{id:?} is not an Enterprise Edition instance id such as cri-abc123; leave it empty (\"\") for Personal Edition"),
        ));
    }
    Ok(id)
}

fn role_arn(ctx: &Ctx<'_>, field: &str, arn: String) -> Result<String, TranslateError> {
    if is_role_arn(&arn) {
        Ok(arn)
    } else {
        Err(ctx.invalid(
            field,
            format!(
                "{arn:?} is not a RAM role ARN such as acs:ram::1234567890123456:role/acr-puller"
            ),
        ))
    }
}

fn domains(
    ctx: &Ctx<'_>,
    v: &Value,
    warnings: &mut Vec<Warning>,
) -> Result<Option<Vec<String>>, TranslateError> {
    let raw: Vec<String> = match v {
        Value::Null => return Ok(None),
        Value::String(s) => s.split(',').map(str::to_owned).collect(),
        Value::Sequence(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| ctx.wrong_type("domains", "expected host names"))
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(ctx.wrong_type(
                "domains",
                "expected host names separated by commas, such as \"a.example.com,b.example.com\"",
            ));
        }
    };
    let mut out: Vec<String> = Vec::new();
    for d in raw {
        let d = d.trim().trim_matches('"').trim();
        if d.is_empty() {
            continue;
        }
        let lower = d.to_ascii_lowercase();
        if lower != d {
            warnings.push(Warning::new(
                key::ACR_REGISTRY_INFO,
                format!("{}: {d:?} written in lower case", ctx.field("domains")),
            ));
        }
        if !is_dns_subdomain(&lower) {
            return Err(ctx.invalid(
                "domains",
                format!("{d:?} is not a host name; write the registry's domain without scheme, port or path, such as myinstance-registry.cn-hangzhou.cr.aliyuncs.com"),
            ));
        }
        if out.contains(&lower) {
            warnings.push(Warning::new(
                key::ACR_REGISTRY_INFO,
                format!(
                    "{}: {lower:?} is listed twice; kept once",
                    ctx.field("domains")
                ),
            ));
        } else {
            out.push(lower);
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

fn expire_duration(ctx: &Ctx<'_>, v: &Value) -> Result<Option<u64>, TranslateError> {
    let secs = match v {
        Value::Null => return Ok(None),
        Value::Number(n) => n.as_u64(),
        Value::String(s) if s.trim().is_empty() => return Ok(None),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    match secs {
        Some(s @ 3600..=43200) => Ok(Some(s)),
        Some(s) => Err(ctx.invalid(
            "expireDuration",
            format!(
                "{s} is out of range: the STS session duration is 3600 to 43200 seconds (1h to 12h)"
            ),
        )),
        None => Err(ctx.wrong_type(
            "expireDuration",
            "expected a whole number of seconds from 3600 to 43200",
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn block_list_lines() {
        let text = "- instanceId: cri-a\n  regionId: cn-hangzhou\n  domains:\n    - a.com\n- instanceId: \"\"\n";
        assert_eq!(item_lines(text), [1, 5]);
        assert_eq!(field_line(text, &[1, 5], 0, "regionId"), Some(2));
        assert_eq!(field_line(text, &[1, 5], 1, "instanceId"), Some(5));
    }

    #[test]
    fn parses_all_fields() {
        let text = r#"
- instanceId: "cri-abc123"
  regionId: "cn-hangzhou"
  domains: "a-registry.cn-hangzhou.cr.aliyuncs.com, A-registry-vpc.cn-hangzhou.cr.aliyuncs.com"
  assumeRoleARN: "acs:ram::1234567890123456:role/acr-puller"
  expireDuration: 7200
  rrsaRoleARN: "acs:ram::1111111111111111:role/acr-helper"
  rrsaOIDCProviderRoleARN: "acs:ram::1111111111111111:oidc-provider/ack-rrsa-c1"
"#;
        let mut w = vec![];
        let entries = parse(Some(text), &mut w).unwrap();
        let e = &entries[0];
        assert_eq!(e.instance_id.as_deref(), Some("cri-abc123"));
        assert_eq!(e.region.as_deref(), Some("cn-hangzhou"));
        assert_eq!(e.domains.as_ref().unwrap().len(), 2);
        assert_eq!(e.expire_duration, Some(7200));
        assert!(e.rrsa_oidc_provider_arn.is_some());
        assert_eq!(w.len(), 1, "lower-casing is reported");
        assert_eq!(e.line, Some(2));
    }

    #[test]
    fn personal_edition_and_empty_values() {
        let entries = parse(
            Some("- instanceId: \"\"\n  regionId: cn-beijing\n- instanceId:\n"),
            &mut vec![],
        )
        .unwrap();
        assert_eq!(entries.len(), 2);
        assert!(entries.iter().all(|e| e.instance_id.is_none()));
        assert!(parse(Some(""), &mut vec![]).unwrap().is_empty());
        assert!(parse(None, &mut vec![]).unwrap().is_empty());
    }

    #[test]
    fn domains_as_list_and_json_value() {
        let json =
            r#"[{"instanceId":"cri-abc","regionId":"cn-wulanchabu","domains":["x.example.com"]}]"#;
        let e = parse(Some(json), &mut vec![]).unwrap();
        assert_eq!(e[0].domains, Some(vec!["x.example.com".to_owned()]));
        assert_eq!(e[0].line, None);
    }

    #[test]
    fn errors_name_entry_field_and_line() {
        let text = "- instanceId: cri-ok\n- instanceId: cri-ok2\n  regionID: cn-hangzhou\n  expireDuration: 60\n";
        let errs = parse(Some(text), &mut vec![]).unwrap_err();
        let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert!(
            shown
                .iter()
                .any(|s| s
                    .contains("(line 3): [1].regionID: unknown field; did you mean \"regionId\"")),
            "{shown:?}"
        );
        assert!(
            shown
                .iter()
                .any(|s| s.contains("(line 4): [1].expireDuration: 60 is out of range")),
            "{shown:?}"
        );
    }

    #[test]
    fn yaml_errors_carry_the_line() {
        let text = "- instanceId: cri-a\n  regionId: cn-hangzhou\n  domains: \"a.com\",\"b.com\"\n";
        let errs = parse(Some(text), &mut vec![]).unwrap_err();
        assert_eq!(errs[0].line(), Some(3));
        assert!(errs[0].to_string().contains("one string"), "{}", errs[0]);
    }

    #[test]
    fn not_a_list() {
        let errs = parse(Some("instanceId: cri-a"), &mut vec![]).unwrap_err();
        assert_eq!(errs[0].reason(), "WrongType");
    }

    #[test]
    fn access_key_halves_go_together() {
        let errs = parse(
            Some("- instanceId: \"\"\n  customAccessKey: LTAIxxxx\n"),
            &mut vec![],
        )
        .unwrap_err();
        assert!(errs[0].to_string().contains("customAccessKeySecret"));
        let ok = parse(
            Some("- instanceId: \"\"\n  customAccessKey: LTAIxxxx\n  customAccessKeySecret: s3cr3t\n"),
            &mut vec![],
        )
        .unwrap();
        let (id, _) = ok[0].access_key.as_ref().unwrap();
        assert_eq!(id.expose(), "LTAIxxxx");
        assert!(!format!("{:?}", ok[0]).contains("s3cr3t"));
    }

    #[test]
    fn several_instance_ids_in_one_entry() {
        let errs = parse(Some("- instanceId: cri-a,cri-b\n"), &mut vec![]).unwrap_err();
        assert!(errs[0].to_string().contains("one list entry per instance"));
    }
}
