package gateway

import (
	"container/list"
	"sync"
	"time"
)

// lru is a small LRU cache bounded by the total size of its values, for
// compiled playlists and wrapped keys. With a ttl, an entry older than ttl
// is a miss: a version's objects never change, but a version can be
// deleted (its key destroyed), and the deletion notice (Server.Forget) may
// not reach every gateway.
type lru[V any] struct {
	mu    sync.Mutex
	max   int64
	size  int64
	ttl   time.Duration // 0: entries never expire
	now   func() time.Time
	ll    *list.List
	items map[string]*list.Element
}

type lruEntry[V any] struct {
	key   string
	val   V
	size  int64
	added time.Time
}

func newLRU[V any](maxBytes int64, ttl time.Duration, now func() time.Time) *lru[V] {
	if now == nil {
		now = time.Now
	}
	return &lru[V]{max: maxBytes, ttl: ttl, now: now, ll: list.New(), items: map[string]*list.Element{}}
}

func (c *lru[V]) get(key string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[key]; ok {
		ent := e.Value.(*lruEntry[V])
		if c.ttl > 0 && c.now().Sub(ent.added) >= c.ttl {
			c.removeElement(e)
		} else {
			c.ll.MoveToFront(e)
			return ent.val, true
		}
	}
	var zero V
	return zero, false
}

func (c *lru[V]) add(key string, val V, size int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[key]; ok {
		c.removeElement(e)
	}
	var added time.Time
	if c.ttl > 0 {
		added = c.now()
	}
	c.items[key] = c.ll.PushFront(&lruEntry[V]{key: key, val: val, size: size, added: added})
	c.size += size
	for c.size > c.max && c.ll.Len() > 1 {
		c.removeElement(c.ll.Back())
	}
}

// removeIf drops every entry for which drop is true and returns how many.
func (c *lru[V]) removeIf(drop func(key string, val V) bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for e := c.ll.Front(); e != nil; {
		next := e.Next()
		if ent := e.Value.(*lruEntry[V]); drop(ent.key, ent.val) {
			c.removeElement(e)
			n++
		}
		e = next
	}
	return n
}

func (c *lru[V]) removeElement(e *list.Element) {
	ent := e.Value.(*lruEntry[V])
	c.ll.Remove(e)
	delete(c.items, ent.key)
	c.size -= ent.size
}
