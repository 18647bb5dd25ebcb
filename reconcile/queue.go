package reconcile

import (
	"container/heap"
	"sync"
	"time"
)

// queue is a work queue of keys in the manner of client-go's workqueue: a key
// added several times before a worker takes it is processed once; a key added
// while it is being processed is processed again after, never by two workers at
// once. Delayed adds wait in a heap for the clock. Sync callers wait for the
// next pass over their key.
type queue struct {
	mu         sync.Mutex
	cond       *sync.Cond
	order      []Key
	dirty      map[Key]bool
	processing map[Key]bool
	// waiting are the Sync callers of a key not yet taken by a worker; taken
	// those of the pass in progress.
	waiting map[Key][]chan error
	taken   map[Key][]chan error
	delayed delayHeap
	// wake interrupts the delay loop when an earlier delayed key arrives.
	wake     chan struct{}
	shutdown bool
	clock    Clock
}

func newQueue(clock Clock) *queue {
	q := &queue{
		dirty: map[Key]bool{}, processing: map[Key]bool{},
		waiting: map[Key][]chan error{}, taken: map[Key][]chan error{},
		wake: make(chan struct{}, 1), clock: clock,
	}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// add queues k unless it is queued already.
// add queues keys at once: a key given twice is queued once, before any
// worker can take it.
func (q *queue) add(keys ...Key) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, k := range keys {
		q.addLocked(k)
	}
}

func (q *queue) addLocked(k Key) {
	if q.shutdown || q.dirty[k] {
		return
	}
	q.dirty[k] = true
	if q.processing[k] {
		return // done() queues it again
	}
	q.order = append(q.order, k)
	q.cond.Signal()
}

// addWaiter queues k and returns a channel that receives the result of the
// first pass over k that starts after this call.
func (q *queue) addWaiter(k Key) (<-chan error, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.shutdown {
		return nil, false
	}
	ch := make(chan error, 1)
	q.waiting[k] = append(q.waiting[k], ch)
	q.addLocked(k)
	return ch, true
}

// addAfter queues k once the clock has moved d on.
func (q *queue) addAfter(k Key, d time.Duration) {
	if d <= 0 {
		q.add(k)
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.shutdown {
		return
	}
	at := q.clock.Now().Add(d)
	// One entry per key: the earliest wins (a level-triggered pass covers all).
	for i, e := range q.delayed {
		if e.key == k {
			if at.Before(e.at) {
				q.delayed[i].at = at
				heap.Fix(&q.delayed, i)
				q.poke()
			}
			return
		}
	}
	heap.Push(&q.delayed, delayed{key: k, at: at})
	q.poke()
}

func (q *queue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// get blocks until a key is ready and marks it in process (ok false: shut down).
func (q *queue) get() (Key, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.order) == 0 && !q.shutdown {
		q.cond.Wait()
	}
	if q.shutdown {
		return Key{}, false
	}
	k := q.order[0]
	q.order = q.order[1:]
	q.processing[k] = true
	delete(q.dirty, k)
	q.taken[k] = q.waiting[k]
	delete(q.waiting, k)
	return k, true
}

// done ends the pass over k, hands err to its Sync callers and queues k again
// if it was added meanwhile.
func (q *queue) done(k Key, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, ch := range q.taken[k] {
		ch <- err
	}
	delete(q.taken, k)
	delete(q.processing, k)
	if q.dirty[k] && !q.shutdown {
		q.order = append(q.order, k)
		q.cond.Signal()
	}
}

// close wakes every worker and fails the Sync callers still waiting.
func (q *queue) close(err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.shutdown = true
	for k, chs := range q.waiting {
		for _, ch := range chs {
			ch <- err
		}
		delete(q.waiting, k)
	}
	q.cond.Broadcast()
	q.poke()
}

// len is the number of keys queued and not yet taken.
func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.order)
}

// runDelays moves delayed keys into the queue when they are due, until the
// queue shuts down.
func (q *queue) runDelays() {
	for {
		q.mu.Lock()
		if q.shutdown {
			q.mu.Unlock()
			return
		}
		now := q.clock.Now()
		for len(q.delayed) > 0 && !q.delayed[0].at.After(now) {
			e := heap.Pop(&q.delayed).(delayed)
			q.addLocked(e.key)
		}
		var timer Timer
		if len(q.delayed) > 0 {
			timer = q.clock.NewTimer(q.delayed[0].at.Sub(now))
		}
		q.mu.Unlock()
		if timer == nil {
			<-q.wake
			continue
		}
		select {
		case <-timer.C():
		case <-q.wake:
			timer.Stop()
		}
	}
}

type delayed struct {
	key Key
	at  time.Time
}

type delayHeap []delayed

func (h delayHeap) Len() int           { return len(h) }
func (h delayHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h delayHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *delayHeap) Push(x any)        { *h = append(*h, x.(delayed)) }
func (h *delayHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
