//! The X-Ray trace header Lambda hands out: in the INVOKE event, in `platform.*` records, and
//! in the `X-Amzn-Trace-Id` header a function may send. Parsed strictly (a malformed one is
//! no header), unknown keys ignored.

/// `Root=1-5759e988-bd862e3fe1be46a994272793;Parent=557abcec3ee5a047;Sampled=1`, as in the
/// INVOKE event, `platform.*` records and the `X-Amzn-Trace-Id` request header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XRayHeader {
    /// The OpenTelemetry trace id: the two hex groups of `Root` after `1-`, 32 lowercase hex.
    pub trace_id: String,
    /// 16 lowercase hex, when present.
    pub parent_id: Option<String>,
    /// `Sampled=1` / `0`; `None` when absent or `?` (decide locally).
    pub sampled: Option<bool>,
}

impl XRayHeader {
    pub fn parse(value: &str) -> Option<XRayHeader> {
        let (mut root, mut parent, mut sampled) = (None, None, None);
        for part in value.split(';') {
            let (k, v) = part.trim().split_once('=')?;
            match k.trim() {
                "Root" => root = Some(v.trim()),
                "Parent" => parent = Some(v.trim()),
                "Sampled" => {
                    sampled = match v.trim() {
                        "1" => Some(true),
                        "0" => Some(false),
                        _ => None,
                    }
                }
                _ => {} // Lineage= and future keys
            }
        }
        let mut groups = root?.split('-');
        let (version, time, random) = (groups.next()?, groups.next()?, groups.next()?);
        if version != "1" || groups.next().is_some() || time.len() != 8 || random.len() != 24 {
            return None;
        }
        let trace_id = format!("{time}{random}").to_ascii_lowercase();
        if !is_hex(&trace_id) || trace_id.bytes().all(|b| b == b'0') {
            return None;
        }
        let parent_id = parent
            .map(str::to_ascii_lowercase)
            .filter(|p| p.len() == 16 && is_hex(p) && p != "0000000000000000");
        Some(XRayHeader {
            trace_id,
            parent_id,
            sampled,
        })
    }
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xray_headers() {
        let h = XRayHeader::parse("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=557abcec3ee5a047;Sampled=1;Lineage=a:1").unwrap();
        assert_eq!(
            (h.trace_id.as_str(), h.parent_id.as_deref(), h.sampled),
            ("5759e988bd862e3fe1be46a994272793", Some("557abcec3ee5a047"), Some(true))
        );
        let h = XRayHeader::parse("Root=1-5759E988-BD862E3FE1BE46A994272793;Sampled=?").unwrap();
        assert_eq!(
            (h.trace_id.as_str(), h.parent_id, h.sampled),
            ("5759e988bd862e3fe1be46a994272793", None, None)
        );
        assert_eq!(XRayHeader::parse("Parent=557abcec3ee5a047"), None, "no root");
        assert_eq!(
            XRayHeader::parse("Root=2-5759e988-bd862e3fe1be46a994272793"),
            None,
            "unknown version"
        );
        assert_eq!(XRayHeader::parse("Root=1-5759e988-bd86"), None, "short");
        assert_eq!(
            XRayHeader::parse("Root=1-00000000-000000000000000000000000"),
            None,
            "all-zero id is invalid in OTel"
        );
        assert_eq!(XRayHeader::parse("garbage"), None);
    }
}
