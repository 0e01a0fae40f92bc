//! `[[authorities]]`: the node's authorities, each with its certificate and key, and during a
//! key migration the previous ones (decryption only).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{KeyFiles, RawConfig};

impl RawConfig {
    /// The node's own authorities (id → name) and their key files.
    pub(super) fn authorities(
        &self,
        abs: &dyn Fn(&Path) -> PathBuf,
        errs: &mut Vec<String>,
    ) -> (BTreeMap<String, String>, BTreeMap<String, KeyFiles>) {
        let mut authorities = BTreeMap::new();
        let mut authority_keys = BTreeMap::new();
        for (i, a) in self.authorities.iter().enumerate() {
            if !adapters::is_authority(&a.id) {
                errs.push(format!("authorities[{i}].id: {:?} is not prefix:kennung", a.id));
            } else if authorities.insert(a.id.clone(), a.name.clone()).is_some() {
                errs.push(format!("authorities[{i}].id: {} is listed twice", a.id));
            }
            let previous = match (&a.previous_certificate, &a.previous_key) {
                (Some(c), Some(k)) => Some((abs(c), abs(k))),
                (None, None) => None,
                _ => {
                    errs.push(format!(
                        "authorities[{i}]: previous_certificate and previous_key go together"
                    ));
                    None
                }
            };
            let files = KeyFiles {
                certificate: abs(&a.certificate),
                key: abs(&a.key),
                previous,
            };
            let previous = files
                .previous
                .iter()
                .flat_map(|(c, k)| [("previous_certificate", c), ("previous_key", k)]);
            for (field, p) in [("certificate", &files.certificate), ("key", &files.key)]
                .into_iter()
                .chain(previous)
            {
                if !p.is_file() {
                    errs.push(format!("authorities[{i}].{field}: {} does not exist", p.display()));
                }
            }
            authority_keys.insert(a.id.clone(), files);
        }
        (authorities, authority_keys)
    }
}
