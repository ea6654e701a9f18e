//! User-agent parsing with woothee (its data is compiled in: works offline), behind a bounded
//! cache shared by the publisher threads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::event::Text;

/// What sluice keeps from a parsed user agent. `None` where the parser does not know.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserAgentInfo {
    /// Browser family, e.g. `Chrome`.
    pub br_family: Option<Text>,
    /// Browser family and major version, e.g. `Chrome 120`.
    pub br_name: Option<Text>,
    /// Full browser version, e.g. `120.0.6099.109`.
    pub br_version: Option<Text>,
    /// Operating system family, e.g. `Windows`, `Mac OS X`, `iOS`, `Android`, `Linux`.
    pub os_family: Option<Text>,
    /// Operating system name with version where known, e.g. `Windows 10`, `Android 13`.
    pub os_name: Option<Text>,
    /// `Computer`, `Mobile`, `Tablet`, `Robot`, `Game console` or `Other`.
    pub dvce_type: Option<Text>,
    /// True for mobiles and tablets.
    pub dvce_ismobile: Option<bool>,
}

/// Parses user agents, remembering up to `capacity` distinct ones (the whole cache is dropped
/// when it fills: bounded memory, no bookkeeping on the hot path).
pub struct UaParser {
    parser: woothee::parser::Parser,
    capacity: usize,
    cache: Mutex<HashMap<String, Arc<UserAgentInfo>>>,
}

impl std::fmt::Debug for UaParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UaParser")
            .field("capacity", &self.capacity)
            .field("cached", &self.cached())
            .finish()
    }
}

impl UaParser {
    /// A parser with a cache of `capacity` entries (0 = no cache).
    pub fn new(capacity: usize) -> UaParser {
        UaParser {
            parser: woothee::parser::Parser::new(),
            capacity,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The parsed fields of `agent`.
    pub fn parse(&self, agent: &str) -> Arc<UserAgentInfo> {
        if self.capacity > 0 {
            if let Some(hit) = self.lock().get(agent) {
                return Arc::clone(hit);
            }
        }
        let info = Arc::new(self.parse_uncached(agent));
        if self.capacity > 0 {
            let mut cache = self.lock();
            if cache.len() >= self.capacity {
                cache.clear();
            }
            cache.insert(agent.to_owned(), Arc::clone(&info));
        }
        info
    }

    /// How many user agents are cached now.
    pub fn cached(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<UserAgentInfo>>> {
        // A panic while holding the lock cannot leave the map inconsistent: keep using it.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn parse_uncached(&self, agent: &str) -> UserAgentInfo {
        let Some(r) = self.parser.parse(agent) else {
            return UserAgentInfo::default();
        };
        let known =
            |s: &str| (!s.is_empty() && s != woothee::woothee::VALUE_UNKNOWN).then(|| s.to_owned());
        let br_family = known(r.name);
        let br_version = known(r.version);
        let br_name = match (&br_family, &br_version) {
            (Some(f), Some(v)) => Some(format!("{f} {}", v.split('.').next().unwrap_or(v))),
            (Some(f), None) => Some(f.clone()),
            _ => None,
        };
        let os = known(r.os);
        let os_version = known(&r.os_version);
        let os_family = os.as_deref().map(os_family);
        let os_name = match (&os, &os_version) {
            // Woothee's Windows names already carry the release ("Windows 10"); its version is
            // the NT kernel's.
            (Some(o), Some(v)) if !o.starts_with("Windows") && !o.contains(v.as_str()) => {
                Some(format!("{o} {v}"))
            }
            (Some(o), _) => Some(o.clone()),
            _ => None,
        };
        let tablet = r.os == "iPad"
            || (r.os == "Android" && !agent.contains("Mobile") && r.category == "smartphone");
        let dvce_type = match r.category {
            "pc" => Some("Computer"),
            "smartphone" | "mobilephone" if tablet => Some("Tablet"),
            "smartphone" | "mobilephone" => Some("Mobile"),
            "crawler" => Some("Robot"),
            "appliance"
                if ["PlayStation", "Nintendo", "Xbox"]
                    .iter()
                    .any(|c| r.os.contains(c) || r.name.contains(c)) =>
            {
                Some("Game console")
            }
            "appliance" | "misc" => Some("Other"),
            _ => None,
        };
        UserAgentInfo {
            br_family: br_family.map(Text::from),
            br_name: br_name.map(Text::from),
            br_version: br_version.map(Text::from),
            os_family: os_family.map(Text::from),
            os_name: os_name.map(Text::from),
            dvce_ismobile: dvce_type.map(|t| t == "Mobile" || t == "Tablet"),
            dvce_type: dvce_type.map(Text::from),
        }
    }
}

/// The family of a woothee OS name.
fn os_family(os: &str) -> String {
    let family = if os.starts_with("Windows") {
        "Windows"
    } else if os == "Mac OSX" || os == "Mac OS" {
        "Mac OS X"
    } else if matches!(os, "iPhone" | "iPad" | "iPod" | "iOS") {
        "iOS"
    } else {
        os
    };
    family.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.109 Safari/537.36";
    const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
    const SAFARI_IPAD: &str = "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1";
    const GOOGLEBOT: &str =
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

    #[test]
    fn a_desktop_chrome_is_a_computer_running_windows() {
        let p = UaParser::new(10);
        let info = p.parse(CHROME_WINDOWS);
        assert_eq!(info.br_family.as_deref(), Some("Chrome"));
        assert_eq!(info.br_name.as_deref(), Some("Chrome 120"));
        assert_eq!(info.br_version.as_deref(), Some("120.0.6099.109"));
        assert_eq!(info.os_family.as_deref(), Some("Windows"));
        assert_eq!(info.os_name.as_deref(), Some("Windows 10"));
        assert_eq!(info.dvce_type.as_deref(), Some("Computer"));
        assert_eq!(info.dvce_ismobile, Some(false));
    }

    #[test]
    fn an_iphone_is_a_mobile_and_an_ipad_is_a_tablet() {
        let p = UaParser::new(10);
        let phone = p.parse(SAFARI_IPHONE);
        assert_eq!(phone.br_family.as_deref(), Some("Safari"));
        assert_eq!(phone.os_family.as_deref(), Some("iOS"));
        assert_eq!(phone.dvce_type.as_deref(), Some("Mobile"));
        assert_eq!(phone.dvce_ismobile, Some(true));
        let pad = p.parse(SAFARI_IPAD);
        assert_eq!(pad.dvce_type.as_deref(), Some("Tablet"));
        assert_eq!(pad.dvce_ismobile, Some(true));
    }

    #[test]
    fn a_crawler_is_a_robot() {
        let info = UaParser::new(0).parse(GOOGLEBOT);
        assert_eq!(info.dvce_type.as_deref(), Some("Robot"));
        assert_eq!(info.dvce_ismobile, Some(false));
    }

    #[test]
    fn an_unknown_agent_leaves_every_field_empty() {
        let info = UaParser::new(10).parse("-");
        assert_eq!(*info, UserAgentInfo::default());
    }

    #[test]
    fn the_cache_never_holds_more_than_its_capacity() {
        let p = UaParser::new(3);
        for i in 0..10 {
            p.parse(&format!("agent/{i}"));
            assert!(p.cached() <= 3);
        }
        let first = p.parse(CHROME_WINDOWS);
        let again = p.parse(CHROME_WINDOWS);
        assert!(
            Arc::ptr_eq(&first, &again),
            "a repeated agent is served from the cache"
        );
        let uncached = UaParser::new(0);
        uncached.parse(CHROME_WINDOWS);
        assert_eq!(uncached.cached(), 0);
    }
}
