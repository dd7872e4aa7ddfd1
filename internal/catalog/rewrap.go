package catalog

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// RewrapFunc opens a wrapped key under its KEK and wraps it again under the
// primary KEK, returning the primary's id and the new wrapped bytes. The
// content key itself never changes, so nothing in storage does either.
type RewrapFunc func(kekID, keyID string, wrapped []byte) (newKEKID string, rewrapped []byte, err error)

// RewrapKeys moves every content key not yet wrapped under primaryKEKID to
// it, batch by batch, each batch in its own short transaction (rows locked
// with SKIP LOCKED, so two operators running it at once do not collide). It
// returns how many keys it rewrapped. Readers keep working throughout: a row
// is always either wholly old or wholly new.
//
// Before the first batch changes anything, and again in every batch, it
// refuses with a *KEKNotHeldError when a live worker or gateway (a
// kek_holders row with a fresh heartbeat) does not hold primaryKEKID: that
// process could no longer open the keys it rewraps.
func (db *DB) RewrapKeys(ctx context.Context, primaryKEKID string, batch int, rewrap RewrapFunc) (int, error) {
	if batch <= 0 {
		batch = 500
	}
	total := 0
	for {
		n := 0
		err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
			if err := checkHolders(ctx, tx, primaryKEKID); err != nil {
				return err
			}
			rows, err := tx.Query(ctx, `select key_id, kek_id, wrapped from content_keys
				where kek_id <> $1 order by key_id limit $2 for update skip locked`, primaryKEKID, batch)
			if err != nil {
				return err
			}
			type row struct {
				keyID, kekID string
				wrapped      []byte
			}
			todo, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
				var x row
				return x, r.Scan(&x.keyID, &x.kekID, &x.wrapped)
			})
			if err != nil {
				return err
			}
			for _, x := range todo {
				kek, w, err := rewrap(x.kekID, x.keyID, x.wrapped)
				if err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `update content_keys set kek_id = $2, wrapped = $3, rewrapped_at = now() where key_id = $1`,
					x.keyID, kek, w); err != nil {
					return err
				}
			}
			n = len(todo)
			return nil
		})
		var notHeld *KEKNotHeldError
		if errors.As(err, &notHeld) {
			notHeld.Rewrapped = total
			return total, err
		}
		if err != nil {
			return total, fmt.Errorf("catalog: rewrap keys: %w", err)
		}
		total += n
		if n < batch {
			return total, nil
		}
	}
}

// KEKUsage counts content keys by the KEK that wraps them.
func (db *DB) KEKUsage(ctx context.Context) (map[string]int, error) {
	rows, err := db.pool.Query(ctx, `select kek_id, count(*) from content_keys group by kek_id`)
	if err != nil {
		return nil, fmt.Errorf("catalog: kek usage: %w", err)
	}
	out := map[string]int{}
	var (
		kek string
		n   int
	)
	if _, err := pgx.ForEachRow(rows, []any{&kek, &n}, func() error { out[kek] = n; return nil }); err != nil {
		return nil, fmt.Errorf("catalog: kek usage: %w", err)
	}
	return out, nil
}
