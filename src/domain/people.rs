//! Who may ask purser things: people, their role, and the chat identities
//! that are theirs. Platforms are named by the key their adapter uses.

use std::collections::HashMap;

use super::command::Role;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub name: String,
    pub role: Role,
}

/// (platform, user id) → person.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    by_identity: HashMap<(String, String), Person>,
}

impl Directory {
    /// `identities` are (platform, user id, person). A later duplicate is refused
    /// by config validation; here the first wins.
    pub fn new(identities: impl IntoIterator<Item = (String, String, Person)>) -> Directory {
        let mut by_identity = HashMap::new();
        for (platform, user, person) in identities {
            by_identity.entry((platform, user)).or_insert(person);
        }
        Directory { by_identity }
    }

    pub fn lookup(&self, platform: &str, user: &str) -> Option<&Person> {
        self.by_identity
            .get(&(platform.to_owned(), user.to_owned()))
    }

    pub fn is_empty(&self) -> bool {
        self.by_identity.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn people_are_found_by_platform_and_id_only() {
        let ana = Person {
            name: "ana".into(),
            role: Role::Approver,
        };
        let d = Directory::new([("chat-a".into(), "U1".into(), ana.clone())]);
        assert_eq!(d.lookup("chat-a", "U1"), Some(&ana));
        assert_eq!(
            d.lookup("chat-b", "U1"),
            None,
            "the same id elsewhere is someone else"
        );
        assert_eq!(d.lookup("chat-a", "u1"), None);
    }
}
