package gateway

import (
	"container/list"
	"sync"
)

// lru is a small LRU cache bounded by the total size of its values, for
// compiled playlists (immutable: versions never change) and wrapped keys.
type lru[V any] struct {
	mu    sync.Mutex
	max   int64
	size  int64
	ll    *list.List
	items map[string]*list.Element
}

type lruEntry[V any] struct {
	key  string
	val  V
	size int64
}

func newLRU[V any](maxBytes int64) *lru[V] {
	return &lru[V]{max: maxBytes, ll: list.New(), items: map[string]*list.Element{}}
}

func (c *lru[V]) get(key string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[key]; ok {
		c.ll.MoveToFront(e)
		return e.Value.(*lruEntry[V]).val, true
	}
	var zero V
	return zero, false
}

func (c *lru[V]) add(key string, val V, size int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[key]; ok {
		c.size -= e.Value.(*lruEntry[V]).size
		c.ll.Remove(e)
	}
	c.items[key] = c.ll.PushFront(&lruEntry[V]{key: key, val: val, size: size})
	c.size += size
	for c.size > c.max && c.ll.Len() > 1 {
		old := c.ll.Back()
		ent := old.Value.(*lruEntry[V])
		c.ll.Remove(old)
		delete(c.items, ent.key)
		c.size -= ent.size
	}
}
