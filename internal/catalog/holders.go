package catalog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Heartbeat timing. Every worker and gateway writes its row every
// HeartbeatInterval; a row whose heartbeat is older than HolderLiveFor
// (three intervals) belongs to a process that is gone or cut off, and no
// longer counts. Times are the database's (now()), so clocks on the hosts do
// not matter.
const (
	HeartbeatInterval = 15 * time.Second
	HolderLiveFor     = 3 * HeartbeatInterval
	// holderPurgeAfter removes the rows of processes that crashed long ago.
	holderPurgeAfter = 7 * 24 * time.Hour
)

// KEKHolder is one running worker or gateway and the KEKs its keyring holds.
type KEKHolder struct {
	Instance    string // random per process
	Program     string // "worker" or "gateway"
	Host        string
	PID         int
	PrimaryKEK  string   // the KEK it wraps new keys under
	KEKs        []string // every KEK it can unwrap with: primary and retired
	StartedAt   time.Time
	HeartbeatAt time.Time // set by the database
}

// Holds reports whether h can unwrap keys wrapped under kekID.
func (h KEKHolder) Holds(kekID string) bool { return slices.Contains(h.KEKs, kekID) }

func (h KEKHolder) String() string {
	return fmt.Sprintf("%s on %s pid %d (primary %s, holds %s; heartbeat %s)", h.Program, h.Host, h.PID, h.PrimaryKEK,
		strings.Join(h.KEKs, ", "), h.HeartbeatAt.UTC().Format(time.RFC3339))
}

// NewKEKHolder describes this process: a new instance id, the host name and
// pid, started now.
func NewKEKHolder(program string, kekIDs []string) (KEKHolder, error) {
	if program != "worker" && program != "gateway" {
		return KEKHolder{}, fmt.Errorf("catalog: kek holder: program %q: want worker or gateway", program)
	}
	if len(kekIDs) == 0 {
		return KEKHolder{}, errors.New("catalog: kek holder: no KEK ids")
	}
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return KEKHolder{}, fmt.Errorf("catalog: kek holder: %w", err)
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return KEKHolder{Instance: program[:1] + "_" + hex.EncodeToString(b[:]), Program: program, Host: host, PID: os.Getpid(),
		PrimaryKEK: kekIDs[0], KEKs: slices.Clone(kekIDs), StartedAt: time.Now()}, nil
}

// BeatKEKHolder records that h is alive now (insert or update its row), and
// drops rows of processes gone for a week.
func (db *DB) BeatKEKHolder(ctx context.Context, h KEKHolder) error {
	_, err := db.pool.Exec(ctx, `insert into kek_holders (instance_id, program, host, pid, primary_kek, kek_ids, started_at, heartbeat_at)
		values ($1, $2, $3, $4, $5, $6, $7, now())
		on conflict (instance_id) do update set primary_kek = excluded.primary_kek, kek_ids = excluded.kek_ids, heartbeat_at = now()`,
		h.Instance, h.Program, h.Host, h.PID, h.PrimaryKEK, h.KEKs, h.StartedAt)
	if err != nil {
		return fmt.Errorf("catalog: kek heartbeat: %w", err)
	}
	if _, err := db.pool.Exec(ctx, `delete from kek_holders where heartbeat_at < now() - $1::interval`, holderPurgeAfter.String()); err != nil {
		return fmt.Errorf("catalog: kek heartbeat: purge: %w", err)
	}
	return nil
}

// RemoveKEKHolder deletes h's row (on a clean shutdown).
func (db *DB) RemoveKEKHolder(ctx context.Context, instance string) error {
	if _, err := db.pool.Exec(ctx, `delete from kek_holders where instance_id = $1`, instance); err != nil {
		return fmt.Errorf("catalog: kek heartbeat: remove: %w", err)
	}
	return nil
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// LiveKEKHolders lists the processes whose heartbeat is at most
// HolderLiveFor old, by program, host and pid.
func (db *DB) LiveKEKHolders(ctx context.Context) ([]KEKHolder, error) {
	return liveHolders(ctx, db.pool)
}

func liveHolders(ctx context.Context, q querier) ([]KEKHolder, error) {
	rows, err := q.Query(ctx, `select instance_id, program, host, pid, primary_kek, kek_ids, started_at, heartbeat_at
		from kek_holders where heartbeat_at >= now() - $1::interval order by program, host, pid`, HolderLiveFor.String())
	if err != nil {
		return nil, fmt.Errorf("catalog: kek holders: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (KEKHolder, error) {
		var h KEKHolder
		return h, r.Scan(&h.Instance, &h.Program, &h.Host, &h.PID, &h.PrimaryKEK, &h.KEKs, &h.StartedAt, &h.HeartbeatAt)
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: kek holders: %w", err)
	}
	return out, nil
}

// ErrKEKNotHeld is wrapped by a *KEKNotHeldError.
var ErrKEKNotHeld = errors.New("catalog: a live worker or gateway does not hold the KEK")

// KEKNotHeldError lists the live processes that cannot open keys wrapped
// under KEK: rewrapping under it now would make them fail every key.
type KEKNotHeldError struct {
	KEK       string
	Holders   []KEKHolder
	Rewrapped int // keys rewrapped before the refusal (0: nothing changed)
}

func (e *KEKNotHeldError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "catalog: refusing to rewrap under %s: %d live worker(s)/gateway(s) do not hold it and could not open the rewrapped keys:\n", e.KEK, len(e.Holders))
	for _, h := range e.Holders {
		fmt.Fprintf(&b, "  %s\n", h)
	}
	if e.Rewrapped == 0 {
		b.WriteString("nothing was rewrapped. ")
	} else {
		fmt.Fprintf(&b, "stopped after rewrapping %d keys (this holder started meanwhile). ", e.Rewrapped)
	}
	fmt.Fprintf(&b, "Fix: restart each of them with %s in KEY_ENCRYPTION_KEYS_RETIRED (or as KEY_ENCRYPTION_KEY), "+
		"then run rewrap-keys again; a process that is gone stops counting %v after its last heartbeat", e.KEK, HolderLiveFor)
	return b.String()
}

func (e *KEKNotHeldError) Unwrap() error { return ErrKEKNotHeld }

// checkHolders returns a *KEKNotHeldError when a live holder lacks kekID.
func checkHolders(ctx context.Context, q querier, kekID string) error {
	live, err := liveHolders(ctx, q)
	if err != nil {
		return err
	}
	var lacking []KEKHolder
	for _, h := range live {
		if !h.Holds(kekID) {
			lacking = append(lacking, h)
		}
	}
	if len(lacking) > 0 {
		return &KEKNotHeldError{KEK: kekID, Holders: lacking}
	}
	return nil
}

// Heartbeat keeps one process's kek_holders row alive until Stop.
type Heartbeat struct {
	db       *DB
	holder   KEKHolder
	interval time.Duration
	log      *slog.Logger
	cancel   context.CancelFunc
	done     sync.WaitGroup
	stopOnce sync.Once
}

// StartHeartbeat writes h's row at once (an error means the process must
// not start: rewrap-keys could not see it; apply the migrations with
// `worker migrate` first) and then every interval (HeartbeatInterval when
// 0) until Stop or ctx ends.
func (db *DB) StartHeartbeat(ctx context.Context, h KEKHolder, interval time.Duration, log *slog.Logger) (*Heartbeat, error) {
	if interval <= 0 {
		interval = HeartbeatInterval
	}
	if err := db.BeatKEKHolder(ctx, h); err != nil {
		return nil, fmt.Errorf("%w (the kek_holders table comes with `worker migrate`)", err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	hb := &Heartbeat{db: db, holder: h, interval: interval, log: log, cancel: cancel}
	hb.done.Go(func() { hb.run(ctx) })
	log.Info("kek heartbeat started", "instance", h.Instance, "keks", h.KEKs, "interval_seconds", interval.Seconds())
	return hb, nil
}

// Holder is the row this heartbeat keeps alive.
func (hb *Heartbeat) Holder() KEKHolder { return hb.holder }

func (hb *Heartbeat) run(ctx context.Context) {
	t := time.NewTicker(hb.interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		bctx, cancel := context.WithTimeout(ctx, hb.interval)
		err := hb.db.BeatKEKHolder(bctx, hb.holder)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			hb.log.Warn("kek heartbeat failed: rewrap-keys will not see this process once its row is stale", "err", err)
			failing = true
		case err == nil && failing:
			hb.log.Info("kek heartbeat recovered")
			failing = false
		}
	}
}

// Stop ends the heartbeat and deletes the row, so that a clean shutdown
// does not hold up a rotation. Safe to call more than once.
func (hb *Heartbeat) Stop(ctx context.Context) {
	hb.stopOnce.Do(func() {
		hb.cancel()
		hb.done.Wait()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := hb.db.RemoveKEKHolder(ctx, hb.holder.Instance); err != nil {
			hb.log.Warn("kek heartbeat: remove row", "err", err)
		}
	})
}
