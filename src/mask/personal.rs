//! Which column and field names look personal: with `--mask`, each of these needs a rule (or
//! an explicit `keep`), so a column a later migration adds cannot leak unmasked.

/// Name parts (after splitting on `_`, `-`, `.`, spaces and camelCase) that mark personal data.
const PERSONAL_WORDS: &[&str] = &[
    "email",
    "mail",
    "phone",
    "mobile",
    "tel",
    "telephone",
    "fax",
    "name",
    "firstname",
    "lastname",
    "fullname",
    "surname",
    "username",
    "address",
    "street",
    "city",
    "zip",
    "postcode",
    "postal",
    "birth",
    "birthday",
    "birthdate",
    "dob",
    "ssn",
    "national",
    "passport",
    "tax",
    "iban",
    "card",
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "ip",
    "salary",
];

/// Whether a column or field name (the last part of a dotted path) looks personal.
pub fn looks_personal(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    words(last).any(|w| PERSONAL_WORDS.contains(&w.as_str()))
}

/// The lower-case words of an identifier: `firstName`, `first_name` and `FirstName` all give
/// `first`, `name`.
fn words(name: &str) -> impl Iterator<Item = String> + '_ {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut previous_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            out.push(std::mem::take(&mut current));
            previous_lower = false;
            continue;
        }
        if c.is_uppercase() && previous_lower {
            out.push(std::mem::take(&mut current));
        }
        previous_lower = c.is_lowercase() || c.is_ascii_digit();
        current.extend(c.to_lowercase());
    }
    out.push(current);
    out.into_iter().filter(|w| !w.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_names_are_recognised_by_whole_words() {
        for name in [
            "email",
            "customer_email",
            "firstName",
            "full_name",
            "phone",
            "profile.phone",
            "birth_date",
            "national_id",
            "password_hash",
            "api_token",
            "last_login_ip",
            "shipping_address",
        ] {
            assert!(looks_personal(name), "{name}");
        }
        for name in [
            "id",
            "sku",
            "description",
            "shipped_at",
            "hotel",
            "total_cents",
            "status",
        ] {
            assert!(!looks_personal(name), "{name}");
        }
    }
}
