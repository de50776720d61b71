//! The containers the daemon confines now, by the runtime's container id.
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use super::confine::Via;
use crate::control::ContainerNames;
use crate::enforcer::Mode;
use crate::ops::Labels;

/// What the daemon remembers of a container it confined.
#[derive(Debug, Clone)]
pub struct ConfinedContainer {
    /// The root cgroup id of its confinement (the key of the pinned state).
    pub cgroup_id: u64,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// The compiled profile's name.
    pub profile: String,
    pub mode: Mode,
    /// The cgroup2 directory confined (for `warden status` and `container` look-ups).
    pub cgroup_path: PathBuf,
    /// How the container reached warden.
    pub via: Via,
    /// The operator's rule that decided its policy (policy::NamespaceRule::name).
    pub rule: String,
    /// That rule's baseline, in force as well.
    pub baseline: Option<String>,
}

impl ConfinedContainer {
    /// How denial logs and metrics name it.
    pub fn labels(&self) -> Labels<'_> {
        Labels {
            cgroup_id: self.cgroup_id,
            namespace: &self.namespace,
            pod: &self.pod,
            container: &self.container,
            profile: &self.profile,
            mode: self.mode,
            rule: &self.rule,
        }
    }

    /// How control-socket events name it (`id`: its container id).
    pub fn names(&self, id: &str) -> ContainerNames {
        ContainerNames {
            container_id: id.to_string(),
            namespace: self.namespace.clone(),
            pod: self.pod.clone(),
            container: self.container.clone(),
        }
    }
}

/// Container id -> what was confined.
#[derive(Default)]
pub struct Registry {
    by_id: Mutex<HashMap<String, ConfinedContainer>>,
}

impl Registry {
    /// The map itself, for a confine's check-apply-insert under one lock. Held briefly: the
    /// event reader takes it for every event.
    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<String, ConfinedContainer>> {
        self.by_id.lock().unwrap()
    }

    pub fn all(&self) -> Vec<(String, ConfinedContainer)> {
        self.lock().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The container confined at root cgroup `cgroup_id`, with its id.
    pub fn by_cgroup(&self, cgroup_id: u64) -> Option<(String, ConfinedContainer)> {
        self.lock().iter().find(|(_, r)| r.cgroup_id == cgroup_id).map(|(k, v)| (k.clone(), v.clone()))
    }

    /// The container confined under `id`, if any.
    pub fn get(&self, id: &str) -> Option<ConfinedContainer> {
        self.lock().get(id).cloned()
    }

    pub(crate) fn insert(&self, id: String, rec: ConfinedContainer) {
        self.lock().insert(id, rec);
    }

    pub(crate) fn remove(&self, id: &str) -> Option<ConfinedContainer> {
        self.lock().remove(id)
    }

    pub(crate) fn drain(&self) -> Vec<ConfinedContainer> {
        self.lock().drain().map(|(_, r)| r).collect()
    }

    /// Compiled names of the profiles some container uses.
    pub fn profiles_in_use(&self) -> BTreeSet<String> {
        self.lock().values().map(|r| r.profile.clone()).collect()
    }

    /// Root cgroup ids of the containers that came through `via`.
    pub fn cgroups_via(&self, via: Via) -> Vec<u64> {
        self.lock().values().filter(|r| r.via == via).map(|r| r.cgroup_id).collect()
    }
}
