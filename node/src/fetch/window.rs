//! How many chunk requests a worker keeps in flight at its peer: as many as keep the peer's
//! answers prompt.
//!
//! A peer's answers queue behind each other in its uplink, which every downloader it serves
//! shares. Past the few requests that keep that uplink busy, more only lengthen the queue: an
//! answer then comes long after it was asked (on a seed capped at 4 MB/s with 8 downloaders
//! asking 16 chunks each, 33 s: past the request timeout, so chunks were asked again and the
//! late copies thrown away), and everything else on the connection (DHT answers, availability,
//! peer exchange) waits behind it. So the window shrinks by half when an answer took longer
//! than [`SLOW_ANSWER`], and grows by one when a window's worth of answers each came within
//! [`FAST_ANSWER`] (additive increase, multiplicative decrease, as TCP does).
//!
//! Invariants: the size stays within 1 and the maximum it was made with; it halves at most
//! once per window's worth of answers (the answers to requests sent before a change say
//! nothing about the change); it starts at the maximum, so a peer on a fast path is asked as
//! much as before.

use std::time::Duration;

/// An answer slower than this means the peer's queue is too long: the window halves.
pub const SLOW_ANSWER: Duration = Duration::from_secs(2);
/// Answers faster than this, a window's worth, let the window grow by one.
pub const FAST_ANSWER: Duration = Duration::from_millis(500);

/// See the module docs.
#[derive(Debug)]
pub struct Window {
    size: usize,
    max: usize,
    /// Answers since the size last changed.
    answers: usize,
}

impl Window {
    /// A window of `max` requests (at least 1), which it starts at.
    pub fn new(max: usize) -> Window {
        let max = max.max(1);
        Window {
            size: max,
            max,
            answers: max,
        }
    }

    /// Requests to keep in flight now.
    pub fn size(&self) -> usize {
        self.size
    }

    /// An answer came `took` after it was asked.
    pub fn answered(&mut self, took: Duration) {
        self.answers += 1;
        if took > SLOW_ANSWER {
            self.shrink();
        } else if took < FAST_ANSWER && self.answers >= self.size && self.size < self.max {
            self.size += 1;
            self.answers = 0;
        }
    }

    /// The peer said it is busy: as a slow answer.
    pub fn busy(&mut self) {
        self.answers += 1;
        self.shrink();
    }

    fn shrink(&mut self) {
        if self.answers >= self.size && self.size > 1 {
            self.size = (self.size / 2).max(1);
            self.answers = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLOW: Duration = Duration::from_secs(5);
    const FAST: Duration = Duration::from_millis(10);
    const MIDDLING: Duration = Duration::from_secs(1);

    #[test]
    fn a_prompt_peer_keeps_the_whole_window() {
        let mut window = Window::new(16);
        for _ in 0..100 {
            window.answered(FAST);
            window.answered(MIDDLING);
        }
        assert_eq!(window.size(), 16);
    }

    #[test]
    fn slow_answers_halve_the_window_once_per_window_down_to_one() {
        let mut window = Window::new(16);
        window.answered(SLOW);
        assert_eq!(window.size(), 8, "the first slow answer halves it");
        // The other answers to requests sent before the change say nothing about it.
        for _ in 0..7 {
            window.answered(SLOW);
        }
        assert_eq!(window.size(), 8);
        window.answered(SLOW);
        assert_eq!(window.size(), 4, "a window's worth later, again");
        for _ in 0..100 {
            window.answered(SLOW);
        }
        assert_eq!(window.size(), 1);
        window.busy();
        assert_eq!(window.size(), 1, "never below one");
    }

    #[test]
    fn a_busy_answer_halves_it_like_a_slow_one() {
        let mut window = Window::new(8);
        window.busy();
        assert_eq!(window.size(), 4);
    }

    #[test]
    fn prompt_answers_grow_it_back_by_one_per_window_up_to_the_maximum() {
        let mut window = Window::new(4);
        for _ in 0..20 {
            window.answered(SLOW);
        }
        assert_eq!(window.size(), 1);
        window.answered(FAST);
        assert_eq!(window.size(), 2);
        window.answered(FAST);
        assert_eq!(window.size(), 2, "one answer is not a window of two");
        window.answered(FAST);
        assert_eq!(window.size(), 3);
        for _ in 0..100 {
            window.answered(FAST);
        }
        assert_eq!(window.size(), 4, "never above the maximum");
        assert_eq!(Window::new(0).size(), 1);
    }
}
