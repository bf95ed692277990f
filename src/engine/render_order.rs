//! In which order the vocoder renders the chunks waiting for it. Pure: the vocoder stage and
//! the simulation both order their forwards with [`render_order`] (the start check's replay
//! keeps plain deadline order, see [`super::start`]).
//!
//! Earliest deadline first, but a listener still waiting for its first audio goes ahead of
//! the calls under way while every one of them can spare the time: a call under way usually
//! has a whole chunk in hand, and rendering its next one first would only spend that slack
//! while a new caller hears nothing. A call under way goes first as soon as waiting one more
//! window would bring its audio later than its margin allows.
//!
//! Which windows share a forward is [`joins_forward`]; whether a forward waits for a window
//! not ready yet, [`hold_until`].

/// A request with a chunk waiting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Waiting {
    /// When its listener runs out of audio (before its first audio: its first-audio target),
    /// in seconds on the caller's clock.
    pub deadline: f64,
    /// Its listener waits for its first audio now.
    pub first: bool,
    /// Seconds its window takes to render alone (an estimate).
    pub render_s: f64,
}

/// How the vocoder's forwards are made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Forwards {
    /// Windows one forward renders, at most.
    pub batch: usize,
    /// Time of a full forward over its longest window's time alone (windows are padded to it).
    pub batch_factor: f64,
    /// First windows one forward renders, at most (a forward of first windows renders no
    /// other), and that forward's time over one of them alone.
    pub first_batch: usize,
    pub first_batch_factor: f64,
    /// Seconds each chunk must reach its listener ahead of its deadline.
    pub margin_s: f64,
}

impl Forwards {
    /// Windows a forward that starts with `head`'s renders, at most.
    pub fn limit(&self, head: &Waiting) -> usize {
        if head.first {
            self.first_batch.max(1)
        } else {
            self.batch.max(1)
        }
    }

    /// Seconds a forward of `count` windows takes, the longest `longest_s` alone: padded to it,
    /// batched at the factor of its kind (first windows or any).
    fn batched_s(&self, longest_s: f64, count: usize, of_first_windows: bool) -> f64 {
        let factor = if of_first_windows {
            self.first_batch_factor
        } else {
            self.batch_factor
        };
        longest_s * if count > 1 { factor } else { 1.0 }
    }

    /// Seconds a forward of `windows` (its head first) takes.
    fn forward_s<'a>(&self, windows: impl Iterator<Item = &'a Waiting>) -> f64 {
        let mut windows = windows.peekable();
        let of_first_windows = windows.peek().is_some_and(|w| w.first);
        let (count, longest) = windows.fold((0, 0.0), |(n, longest), w| (n + 1, f64::max(longest, w.render_s)));
        self.batched_s(longest, count, of_first_windows)
    }

    /// How far past its margin the latest of `windows` reaches its listener if rendered by `done`
    /// (0 if all are in time).
    fn lateness<'a>(&self, done: f64, windows: impl Iterator<Item = &'a Waiting>) -> f64 {
        windows.map(|w| done + self.margin_s - w.deadline).fold(0.0, f64::max)
    }

    /// The lateness of a forward starting `now` with `forward`'s windows and `candidate`'s.
    fn lateness_if_joined(&self, now: f64, forward: &[Waiting], candidate: &Waiting) -> f64 {
        let done = now + self.forward_s(forward.iter().chain([candidate]));
        self.lateness(done, forward.iter().chain([candidate]))
    }

    /// The lateness of `forward` without `candidate`, and of `candidate` in a forward of its
    /// own right after it.
    fn lateness_if_left(&self, now: f64, forward: &[Waiting], candidate: &Waiting) -> f64 {
        let done = now + self.forward_s(forward.iter());
        let next = done + candidate.render_s;
        self.lateness(done, forward.iter())
            .max(self.lateness(next, [candidate].into_iter()))
    }

    /// When each place of `order` is rendered, from now: forwards of the places in turn, up to
    /// `first_batch` first windows together or `batch` places of any kind.
    fn done_after(&self, waiting: &[Waiting], order: &[usize]) -> Vec<f64> {
        let mut done = Vec::with_capacity(order.len());
        let mut t = 0.0;
        let mut rest = order;
        while let Some(&head) = rest.first() {
            let limit = self.limit(&waiting[head]);
            let len = if waiting[head].first {
                rest.iter().take_while(|&&i| waiting[i].first).count().min(limit)
            } else {
                rest.len().min(limit)
            };
            let (forward, after) = rest.split_at(len);
            t += self.forward_s(forward.iter().map(|&i| &waiting[i]));
            done.extend(std::iter::repeat_n(t, len));
            rest = after;
        }
        done
    }

    /// Whether every call under way from place `from` of `order` on gets its chunk in time,
    /// its margin included.
    fn keeps_up(&self, now: f64, waiting: &[Waiting], order: &[usize], from: usize) -> bool {
        let done = self.done_after(waiting, order);
        order
            .iter()
            .zip(done)
            .skip(from)
            .all(|(&i, t)| waiting[i].first || now + t + self.margin_s <= waiting[i].deadline)
    }
}

/// The order to render the chunks of `waiting` (indices into it), starting `now`.
pub fn render_order(now: f64, waiting: &[Waiting], forwards: &Forwards) -> Vec<usize> {
    let by_deadline = |mut ids: Vec<usize>| {
        ids.sort_by(|&a, &b| waiting[a].deadline.total_cmp(&waiting[b].deadline));
        ids
    };
    let (first, under_way): (Vec<usize>, Vec<usize>) = (0..waiting.len()).partition(|&i| waiting[i].first);
    let (mut first, mut under_way) = (by_deadline(first), by_deadline(under_way));
    let mut order = Vec::with_capacity(waiting.len());
    loop {
        let take_first = match (first.first(), under_way.first()) {
            (None, None) => return order,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(&f), Some(&u)) => {
                // The new caller goes next if the calls under way, in deadline order after
                // it, all keep up (or if its own deadline is the earlier).
                let tried: Vec<usize> = order.iter().chain([&f]).chain(&under_way).copied().collect();
                waiting[f].deadline <= waiting[u].deadline || forwards.keeps_up(now, waiting, &tried, order.len())
            }
        };
        let next = if take_first { &mut first } else { &mut under_way };
        order.push(next.remove(0));
    }
}

/// Whether the window of `candidate` joins a forward the vocoder starts `now` with the windows
/// of `forward` (its head first: the most urgent one ready), `waiting` being every listener
/// with work at the vocoder (ready or not). A forward of first windows takes first windows
/// only: small windows, one shape. Into any other, a window joins only if that brings no window
/// later past its margin than leaving it for the next forward would (the forward's or its own):
/// a forward is padded to its longest window and a batch costs more than one window, so
/// joining delays the others in it, while two windows late anyway are better rendered
/// together. Then a listener waiting for its first audio joins, and so does a call nearly due;
/// a call with time to spare joins only while no listener is nearly due, as it would hold back
/// an urgent window that becomes ready meanwhile, to save work the vocoder can do later.
/// [`Forwards::limit`] bounds the forward.
pub fn joins_forward(
    now: f64,
    forward: &[Waiting],
    candidate: &Waiting,
    waiting: &[Waiting],
    forwards: &Forwards,
) -> bool {
    let Some(head) = forward.first() else {
        return true;
    };
    if head.first {
        return candidate.first;
    }
    if forwards.lateness_if_joined(now, forward, candidate) > forwards.lateness_if_left(now, forward, candidate) {
        return false;
    }
    // Due within two full forwards of its own window, its margin included.
    let nearly_due = |w: &Waiting| w.deadline - now - forwards.margin_s <= 2.0 * forwards.batch_factor * w.render_s;
    candidate.first || nearly_due(candidate) || !waiting.iter().any(nearly_due)
}

/// Until when the vocoder should hold back a forward of `forward`'s windows (its head first),
/// or None to start it `now`. A listener under way whose next window is not ready yet, due
/// before the head, would wait behind the whole forward if its window became ready just after
/// it began: a start's second window, due within its short first chunk, behind a forward of
/// full-size windows, say. While that would bring it past its margin, the forward waits for it
/// (it then goes first), as long as every window of the forward can afford to: still in time
/// with half its margin, after the waiting window's own render. `not_ready` are the listeners
/// under way with no window ready.
pub fn hold_until(now: f64, forward: &[Waiting], not_ready: &[Waiting], forwards: &Forwards) -> Option<f64> {
    let earliest = forward.iter().map(|w| w.deadline).reduce(f64::min)?;
    let forward_s = forwards.forward_s(forward.iter());
    not_ready
        .iter()
        .filter(|w| w.deadline < earliest && now + forward_s + w.render_s + forwards.margin_s > w.deadline)
        .map(|w| earliest - forwards.margin_s / 2.0 - forward_s - w.render_s)
        .reduce(f64::min)
        .filter(|&until| until > now)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Windows of 10 ms each.
    fn under_way(deadline: f64) -> Waiting {
        Waiting {
            deadline,
            first: false,
            render_s: 0.010,
        }
    }

    fn first(deadline: f64) -> Waiting {
        Waiting {
            deadline,
            first: true,
            render_s: 0.010,
        }
    }

    const ONE_BY_ONE: Forwards = Forwards {
        batch: 1,
        batch_factor: 1.0,
        first_batch: 1,
        first_batch_factor: 1.0,
        margin_s: 0.080,
    };

    /// Two windows in a forward take 1.6 times one.
    const TWO_AT_1_6: Forwards = Forwards {
        batch: 2,
        batch_factor: 1.6,
        first_batch: 2,
        first_batch_factor: 1.6,
        margin_s: 0.080,
    };

    #[test]
    fn first_audio_goes_ahead_of_calls_with_time_to_spare() {
        // Two calls under way with 150 and 170 ms of audio; three new callers due at 250 ms.
        let waiting = [
            under_way(0.150),
            first(0.250),
            under_way(0.170),
            first(0.250),
            first(0.250),
        ];
        let order = render_order(0.0, &waiting, &ONE_BY_ONE);
        assert_eq!(order, vec![1, 3, 4, 0, 2]);
        // Earliest deadline first alone would have kept the new callers waiting.
        let mut by_deadline: Vec<usize> = (0..waiting.len()).collect();
        by_deadline.sort_by(|&a, &b| waiting[a].deadline.total_cmp(&waiting[b].deadline));
        assert_eq!(by_deadline, vec![0, 2, 1, 3, 4]);
    }

    #[test]
    fn a_call_about_to_run_dry_goes_first() {
        // 105 ms in hand: with the 80 ms margin it can wait one window, not two.
        let waiting = [first(0.250), first(0.250), under_way(0.105), first(0.250)];
        let order = render_order(0.0, &waiting, &ONE_BY_ONE);
        assert_eq!(order, vec![0, 2, 1, 3]);
        // Each window still reaches its listener in time.
        let place = order.iter().position(|&i| i == 2).unwrap();
        assert!(ONE_BY_ONE.done_after(&waiting, &order)[place] + ONE_BY_ONE.margin_s <= 0.105);
    }

    #[test]
    fn calls_under_way_keep_their_order_and_batches_count_as_one_forward() {
        // Two windows in a forward take twice one: 20 ms.
        let batched = Forwards {
            batch: 2,
            batch_factor: 2.0,
            first_batch: 2,
            first_batch_factor: 2.0,
            margin_s: 0.080,
        };
        // The two calls under way fit behind one forward of the two new ones: theirs ends at
        // 40 ms, 120 ms with the margin, within what they hold.
        let waiting = [under_way(0.135), under_way(0.125), first(0.250), first(0.300)];
        assert_eq!(render_order(0.0, &waiting, &batched), vec![2, 3, 1, 0]);
        // With less in hand they go first, earliest first.
        let waiting = [under_way(0.108), under_way(0.105), first(0.250), first(0.300)];
        assert_eq!(render_order(0.0, &waiting, &batched), vec![1, 0, 2, 3]);
    }

    /// First windows that share a forward take less time than one by one: more of them go
    /// ahead of the calls under way.
    #[test]
    fn first_windows_in_one_forward_count_as_one() {
        // Two calls under way that need their windows within 40 ms (120 ms in hand, 80 ms
        // margin); four new callers.
        let waiting = [
            first(0.250),
            first(0.250),
            under_way(0.120),
            first(0.250),
            under_way(0.120),
            first(0.250),
        ];
        // One by one (10 ms each), two new callers fit ahead of them.
        assert_eq!(render_order(0.0, &waiting, &ONE_BY_ONE), vec![0, 1, 2, 4, 3, 5]);
        // Four in a forward of 15 ms all do: the calls under way are done at 25 and 35 ms.
        let together = Forwards {
            first_batch: 4,
            first_batch_factor: 1.5,
            ..ONE_BY_ONE
        };
        assert_eq!(render_order(0.0, &waiting, &together), vec![0, 1, 3, 5, 2, 4]);
    }

    /// A call under way with seconds of audio in hand waits for a forward of its own while
    /// another listener is nearly due; one nearly due itself and a new caller's first window
    /// join; with nobody nearly due, any window joins.
    #[test]
    fn windows_with_time_to_spare_join_only_while_nobody_is_nearly_due() {
        let batched = TWO_AT_1_6;
        let far = Waiting {
            render_s: 0.050,
            ..under_way(2.0)
        };
        // 80 ms margin and two forwards of 80 ms: due within 240 ms.
        let urgent = Waiting { deadline: 0.235, ..far };
        let all = [urgent, far];
        assert!(!joins_forward(0.0, &[urgent], &far, &all, &batched));
        assert!(joins_forward(0.0, &[urgent], &urgent, &all, &batched));
        let later = [Waiting { deadline: 0.245, ..far }, far];
        assert!(
            joins_forward(0.0, &later[..1], &far, &later, &batched),
            "nobody due within 240 ms"
        );
        let later_head = Waiting { deadline: 2.1, ..far };
        assert!(
            joins_forward(1.8, &[later_head], &far, &all, &batched),
            "the same call later, nearly due itself"
        );
        assert!(joins_forward(0.0, &[urgent], &first(0.250), &all, &batched));
        let relaxed = [Waiting { deadline: 1.0, ..far }, far];
        assert!(
            joins_forward(0.0, &relaxed[..1], &far, &relaxed, &batched),
            "nobody to hold back"
        );
        // A forward of first windows takes first windows only.
        let new_caller = first(0.250);
        assert!(joins_forward(0.0, &[new_caller], &first(0.300), &all, &batched));
        assert!(!joins_forward(0.0, &[new_caller], &urgent, &all, &batched));
    }

    /// A window joins only if that brings no window later past its margin than leaving it for
    /// the next forward: a longer window pads the forward to its own length.
    #[test]
    fn no_window_joins_a_forward_it_would_bring_late() {
        let batched = TWO_AT_1_6;
        // 150 ms in hand and a 30 ms window: alone it arrives with 40 ms to spare.
        let head = Waiting {
            deadline: 0.150,
            first: false,
            render_s: 0.030,
        };
        // Both nearly due: only the length of the forward decides.
        let short = Waiting {
            deadline: 0.170,
            ..head
        };
        let long = Waiting {
            render_s: 0.050,
            ..short
        };
        let all = [head, short, long];
        // 30 ms padded, 1.6 times: 48 ms, in time; 50 ms: 80 ms, 10 ms past the margin.
        assert!(joins_forward(0.0, &[head], &short, &all, &batched));
        assert!(!joins_forward(0.0, &[head], &long, &all, &batched));
        // With the long window in already, the head is 10 ms late either way; the short one
        // in the next forward would be 20 ms late, in this one it is in time: it joins.
        assert!(joins_forward(0.0, &[head, long], &short, &all, &batched));
        // A head already short of its margin: joining brings it 78 ms past it, leaving the
        // other for the next forward 60 and 70 ms. It renders alone.
        assert!(!joins_forward(0.1, &[head], &short, &all, &batched));
    }

    /// A forward waits for a listener under way whose window is not ready, if starting it now
    /// would bring that window past its margin, and only as long as the forward's own windows
    /// keep half their margin.
    #[test]
    fn a_forward_waits_for_a_window_nearly_due_while_it_can_afford_to() {
        let batched = TWO_AT_1_6;
        // Two full-size windows due in 300 ms: 100 ms together.
        let full = Waiting {
            deadline: 0.300,
            first: false,
            render_s: 0.0625,
        };
        // A start's second window, due in 140 ms, 30 ms to render.
        let second = Waiting {
            deadline: 0.140,
            first: false,
            render_s: 0.030,
        };
        // Behind the forward it would be done at 130 ms, past its margin: the forward waits,
        // until 300 - 40 - 100 - 30 = 130 ms.
        let until = hold_until(0.0, &[full, full], &[second], &batched).expect("a hold");
        assert!((until - 0.130).abs() < 1e-9, "{until}");
        // Later the forward can no longer afford to wait.
        assert_eq!(hold_until(0.131, &[full, full], &[second], &batched), None);
        // A listener with time to spare, or one due after the forward's, is no reason to wait.
        let spare = Waiting {
            deadline: 0.250,
            ..second
        };
        assert_eq!(hold_until(0.0, &[full, full], &[spare], &batched), None);
        let after = Waiting {
            deadline: 0.310,
            ..second
        };
        assert_eq!(hold_until(0.0, &[full], &[after], &batched), None);
        // A forward of one window waits too: 300 - 40 - 62.5 - 30.
        let until = hold_until(0.0, &[full], &[second], &batched).expect("a hold");
        assert!((until - 0.1675).abs() < 1e-9, "{until}");
        // A forward of first windows costs what first windows cost together: two of 62.5 ms
        // at 1.2 times one, 75 ms; the wait lasts until 300 - 40 - 75 - 30.
        let new_callers = Waiting { first: true, ..full };
        let cheap_firsts = Forwards {
            first_batch_factor: 1.2,
            ..batched
        };
        let until = hold_until(0.0, &[new_callers, new_callers], &[second], &cheap_firsts).expect("a hold");
        assert!((until - 0.155).abs() < 1e-9, "{until}");
        // Nothing to render: nothing to hold.
        assert_eq!(hold_until(0.0, &[], &[second], &batched), None);
    }

    #[test]
    fn a_first_audio_already_due_is_as_urgent_as_its_deadline() {
        // A new caller past its target goes ahead of a call that still has audio, even one
        // that cannot spare the time (it is later by its own deadline).
        let waiting = [under_way(0.050), first(0.020)];
        assert_eq!(render_order(0.0, &waiting, &ONE_BY_ONE), vec![1, 0]);
        // Calls that cannot spare a window go first, in deadline order.
        let waiting = [under_way(0.050), first(0.250), under_way(0.100)];
        assert_eq!(render_order(0.0, &waiting, &ONE_BY_ONE), vec![0, 2, 1]);
        // Nothing waiting: nothing to order.
        assert!(render_order(0.0, &[], &ONE_BY_ONE).is_empty());
    }
}
