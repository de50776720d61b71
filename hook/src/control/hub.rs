//! Event fan-out. The ring buffer has a single consumer position: two readers would each see
//! part of the events. The daemon is that consumer and hands every event to the hub, which
//! gives each `events --follow` subscriber a copy through a bounded queue of its own; a slow
//! subscriber loses events (and is told how many), it never slows the daemon down.
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use super::protocol::{ContainerEvent, ContainerNames, EventFilter};
use crate::events::EventView;

struct Subscriber {
    filter: EventFilter,
    tx: SyncSender<Arc<ContainerEvent>>,
    dropped: Arc<AtomicU64>,
}

/// The daemon's subscribers of `events --follow`.
#[derive(Default)]
pub struct EventHub {
    subs: Mutex<Vec<Subscriber>>,
    /// Containers released lately (root cgroup id, names): their last events may be read from
    /// the ring after the release (a container's final denial, then its exit and
    /// poststop/StopContainer), and must still carry its names. cgroup ids are never reused
    /// within a boot.
    released: Mutex<VecDeque<(u64, ContainerNames)>>,
}

/// How many released containers keep naming their late events.
const RELEASED_KEPT: usize = 256;

pub struct Subscription {
    pub rx: Receiver<Arc<ContainerEvent>>,
    /// Events lost since last taken (queue full).
    pub dropped: Arc<AtomicU64>,
}

impl EventHub {
    pub fn subscribe(&self, filter: EventFilter, queue: usize) -> Subscription {
        let (tx, rx) = sync_channel(queue);
        let dropped = Arc::new(AtomicU64::new(0));
        self.subs.lock().unwrap().push(Subscriber { filter, tx, dropped: dropped.clone() });
        Subscription { rx, dropped }
    }

    /// Called when the container confined at root cgroup `cgroup_id` is released.
    pub fn remember_released(&self, cgroup_id: u64, names: ContainerNames) {
        let mut r = self.released.lock().unwrap();
        if r.len() >= RELEASED_KEPT {
            r.pop_front();
        }
        r.push_back((cgroup_id, names));
    }

    pub fn subscribers(&self) -> usize {
        self.subs.lock().unwrap().len()
    }

    /// Hands `ev` to every matching subscriber without ever blocking: a full queue counts a
    /// drop, a gone subscriber is removed. `who` names the container of the event when it is
    /// confined now; else a container released lately may.
    pub fn publish(&self, who: Option<&ContainerNames>, ev: &EventView) {
        let mut subs = self.subs.lock().unwrap();
        if subs.is_empty() {
            return;
        }
        let released = self.released.lock().unwrap();
        let who = who.or_else(|| released.iter().rev().find(|(id, _)| *id == ev.root_cgroup).map(|(_, n)| n));
        let ev = Arc::new(ContainerEvent {
            container_id: who.map(|n| n.container_id.clone()).unwrap_or_default(),
            namespace: who.map(|n| n.namespace.clone()).unwrap_or_default(),
            pod: who.map(|n| n.pod.clone()).unwrap_or_default(),
            container: who.map(|n| n.container.clone()).unwrap_or_default(),
            event: ev.clone(),
        });
        drop(released);
        subs.retain(|s| {
            if !s.filter.matches(&ev) {
                return true;
            }
            match s.tx.try_send(ev.clone()) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    s.dropped.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(TrySendError::Disconnected(_)) => false,
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn event(root: u64) -> EventView {
        crate::events::view(&warden_common::Event { root_cgroup: root, ..unsafe { std::mem::zeroed() } }, "p".into())
    }

    fn names(id: &str, pod: &str, ctr: &str) -> ContainerNames {
        ContainerNames { container_id: id.into(), namespace: "ns".into(), pod: pod.into(), container: ctr.into() }
    }

    #[test]
    fn fan_out_filters_and_a_slow_subscriber_loses_events_without_blocking() {
        let hub = EventHub::default();
        // root cgroup id -> the container confined there (the daemon's registry, as it names events).
        let recs: HashMap<u64, ContainerNames> =
            [(1, names("id-a", "a", "app")), (2, names("id-b", "b", "app"))].into();
        let publish = |recs: &HashMap<u64, ContainerNames>, root| hub.publish(recs.get(&root), &event(root));
        let only_a = hub.subscribe(EventFilter { follow: true, pod: Some("a".into()), ..Default::default() }, 8);
        let by_id =
            hub.subscribe(EventFilter { follow: true, container: Some("id-b".into()), ..Default::default() }, 8);
        let slow = hub.subscribe(EventFilter { follow: true, ..Default::default() }, 2);
        for _ in 0..5 {
            publish(&recs, 1);
            publish(&recs, 2);
        }
        let got: Vec<_> = only_a.rx.try_iter().collect();
        assert_eq!(got.len(), 5);
        assert!(got.iter().all(|e| e.pod == "a" && e.container_id == "id-a" && e.event.root_cgroup == 1));
        assert_eq!(by_id.rx.try_iter().count(), 5);
        assert_eq!(slow.rx.try_iter().count(), 2);
        assert_eq!(slow.dropped.load(Ordering::Relaxed), 8);
        // Late events of a released container keep its names.
        let mut recs = recs;
        let gone = recs.remove(&2).unwrap();
        hub.remember_released(2, gone);
        publish(&recs, 2);
        assert_eq!(by_id.rx.try_iter().map(|e| e.pod.clone()).collect::<Vec<_>>(), ["b"]);
        // A gone subscriber is removed at the next event.
        drop(only_a);
        publish(&recs, 1);
        assert_eq!(hub.subscribers(), 2);
    }
}
