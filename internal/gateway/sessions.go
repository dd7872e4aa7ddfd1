package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hlsvault/hlsvault/playback"
)

// Sessions enforces the concurrent-stream limit in Redis.
//
// A session is the pair (subject, session id): the id comes from a token the
// app server signed for that subject, and another subject's token carrying
// the same id is another session, which can neither use nor end the first.
// Each subject (account) has a sorted set of its live playback session ids,
// scored by the time each was last seen (Redis's own clock, so gateways with
// skewed clocks agree). Each session also has a marker key, named by session
// id and subject, that remembers it was admitted ("a:<subject>", kept until
// the admitting token has expired) or ended ("released", "evicted", kept for
// MaxTokenLifetime + playback.ClockSkew + TTL: longer than any token that
// can carry the session, so an ended session never comes back). One Lua
// script, run with EVALSHA, does the whole decision atomically, so 100
// parallel starts for one subject admit exactly the limit:
//
//   - an ended session is refused (it lost playlist and key access);
//   - members not seen for the TTL are removed (released by timeout);
//   - a live member is refreshed: a seek, a bitrate switch, a key fetch;
//   - a session that was admitted before but timed out is refused: players
//     get a new session (a new token) from the app server;
//   - otherwise it is admitted if the subject has fewer than the limit.
//
// A gateway remembers for one second which sessions Redis confirmed, so a
// burst of key and playlist requests of one session costs one round trip;
// an eviction therefore takes effect within a second on every gateway.
type Sessions struct {
	rdb         redis.UniversalClient
	prefix      string
	limit       int
	ttl         time.Duration
	keepFor     time.Duration // how long a session marker outlives its token
	maxLifetime time.Duration // the longest a token may live (MAX_TOKEN_LIFETIME)
	localFor    time.Duration
	now         func() time.Time
	mu          sync.Mutex
	recent      map[sessionKey]time.Time // when Redis last confirmed the session live
	lastPruned  time.Time
}

// sessionKey names a session in this process's memory.
type sessionKey struct{ subject, session string }

// SessionsConfig configures Sessions.
type SessionsConfig struct {
	Prefix string        // key prefix, default "hlsvault:gw:"
	Limit  int           // sessions per subject, at least 1
	TTL    time.Duration // a session without requests for this long is released
	// MaxTokenLifetime is the longest life of a token the gateway accepts
	// (MAX_TOKEN_LIFETIME, default 24h): an ended session is remembered
	// for that long plus playback.ClockSkew and TTL.
	MaxTokenLifetime time.Duration
	// LocalConfirm is how long this process trusts Redis's last "live"
	// answer for a session (default 1s; negative disables).
	LocalConfirm time.Duration
	Now          func() time.Time
}

// Outcome of an admission.
type Outcome int

// Admission outcomes.
const (
	Admitted  Outcome = iota // a new session took a place
	Refreshed                // a live session was seen again
	Refused                  // the subject is at its limit
	Ended                    // released, evicted or timed out: no access
)

func (o Outcome) String() string {
	return [...]string{"admitted", "refreshed", "refused", "ended"}[o]
}

// EndReason says why a session ended. The values are stored in Redis as
// the session marker's state, so they are part of the data format.
type EndReason string

// The reasons a session ends.
const (
	EndReleased EndReason = "released" // the player let go of it
	EndEvicted  EndReason = "evicted"  // an operator or the app server stopped it
	EndExpired  EndReason = "expired"  // no request for longer than the session TTL
)

// Decision is the result of Admit.
type Decision struct {
	Outcome Outcome
	Reason  EndReason // for Ended
	Active  int       // the subject's live sessions after the decision
}

// admitScript: KEYS[1] the subject's sorted set, KEYS[2] the session
// marker. ARGV: session id, TTL ms, limit, marker TTL ms, subject, mode
// ("admit" or "touch": a heartbeat never admits).
var admitScript = redis.NewScript(`
local m = redis.call('GET', KEYS[2])
if m and string.sub(m, 1, 2) ~= 'a:' then
  return {-2, m}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ttl)
  return {1, redis.call('ZCARD', KEYS[1])}
end
if m then
  return {-3, 'expired'}
end
if ARGV[6] ~= 'admit' then
  return {-3, 'expired'}
end
local n = redis.call('ZCARD', KEYS[1])
if n >= tonumber(ARGV[3]) then
  return {-1, n}
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('SET', KEYS[2], 'a:' .. ARGV[5], 'PX', ARGV[4])
return {0, n + 1}
`)

// endScript: KEYS[1] the subject's sorted set, KEYS[2] the session marker.
// ARGV: session id, new state, marker TTL ms. It returns 1 when the session
// was live.
var endScript = redis.NewScript(`
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return removed
`)

// NewSessions builds the limiter on a Redis client.
func NewSessions(rdb redis.UniversalClient, cfg SessionsConfig) (*Sessions, error) {
	if cfg.Limit < 1 {
		return nil, fmt.Errorf("gateway: MAX_STREAMS_PER_SUBJECT must be at least 1, got %d", cfg.Limit)
	}
	if cfg.TTL < time.Second {
		return nil, fmt.Errorf("gateway: SESSION_TTL must be at least 1s, got %v", cfg.TTL)
	}
	if cfg.MaxTokenLifetime < 0 {
		return nil, fmt.Errorf("gateway: MAX_TOKEN_LIFETIME must be positive, got %v", cfg.MaxTokenLifetime)
	}
	if cfg.MaxTokenLifetime == 0 {
		cfg.MaxTokenLifetime = 24 * time.Hour
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "hlsvault:gw:"
	}
	if cfg.LocalConfirm == 0 {
		cfg.LocalConfirm = time.Second
	}
	cfg.LocalConfirm = min(cfg.LocalConfirm, cfg.TTL/4)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Sessions{rdb: rdb, prefix: cfg.Prefix, limit: cfg.Limit, ttl: cfg.TTL, keepFor: cfg.TTL,
		maxLifetime: cfg.MaxTokenLifetime, localFor: cfg.LocalConfirm, now: cfg.Now, recent: map[sessionKey]time.Time{}}, nil
}

// Limit is the configured number of sessions per subject.
func (s *Sessions) Limit() int { return s.limit }

// TTL is how long a session lives without requests.
func (s *Sessions) TTL() time.Duration { return s.ttl }

// MaxTokenLifetime is how long a token may live; ended sessions are
// remembered longer than that.
func (s *Sessions) MaxTokenLifetime() time.Duration { return s.maxLifetime }

func (s *Sessions) streamsKey(subject string) string { return s.prefix + "streams:" + subject }

// markerKey names the marker of (subject, session). A session id has no
// ':' (playback.Claims.Validate), so the name is unambiguous whatever the
// subject holds.
func (s *Sessions) markerKey(subject, session string) string {
	return s.prefix + "session:" + session + ":" + subject
}

// markerTTL keeps an admission marker until the token carrying the session
// has expired (after which the token is refused anyway), plus the session
// TTL.
func (s *Sessions) markerTTL(tokenExpires time.Time) time.Duration {
	return max(tokenExpires.Sub(s.now()), 0) + s.keepFor
}

// endedTTL keeps the marker of an ended session longer than any token that
// can carry it: one minted now for the longest lifetime, verified by a
// clock up to playback.ClockSkew behind, kept alive for one more TTL.
func (s *Sessions) endedTTL() time.Duration {
	return s.maxLifetime + playback.ClockSkew + s.keepFor
}

// Admit admits or refreshes the session; with admit false (a heartbeat) it
// only refreshes a live session.
func (s *Sessions) Admit(ctx context.Context, subject, session string, tokenExpires time.Time, admit bool) (Decision, error) {
	now := s.now()
	if s.localFor > 0 {
		s.mu.Lock()
		t, ok := s.recent[sessionKey{subject, session}]
		s.mu.Unlock()
		if ok && now.Sub(t) < s.localFor {
			return Decision{Outcome: Refreshed}, nil
		}
	}
	mode := "touch"
	if admit {
		mode = "admit"
	}
	res, err := admitScript.Run(ctx, s.rdb, []string{s.streamsKey(subject), s.markerKey(subject, session)},
		session, s.ttl.Milliseconds(), s.limit, s.markerTTL(tokenExpires).Milliseconds(), subject, mode).Slice()
	if err != nil {
		return Decision{}, fmt.Errorf("gateway: session admission: %w", err)
	}
	if len(res) != 2 {
		return Decision{}, fmt.Errorf("gateway: session admission: unexpected reply %v", res)
	}
	code, _ := res[0].(int64)
	var d Decision
	switch code {
	case 0, 1:
		d.Outcome = Admitted
		if code == 1 {
			d.Outcome = Refreshed
		}
		n, _ := res[1].(int64)
		d.Active = int(n)
		s.remember(sessionKey{subject, session}, now)
	case -1:
		n, _ := res[1].(int64)
		d = Decision{Outcome: Refused, Active: int(n)}
	case -2, -3:
		reason, _ := res[1].(string)
		d = Decision{Outcome: Ended, Reason: EndReason(reason)}
	default:
		return Decision{}, fmt.Errorf("gateway: session admission: unexpected code %d", code)
	}
	return d, nil
}

func (s *Sessions) remember(k sessionKey, now time.Time) {
	if s.localFor <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recent[k] = now
	if now.Sub(s.lastPruned) > 10*s.localFor || len(s.recent) > 100_000 {
		for k, t := range s.recent {
			if now.Sub(t) >= s.localFor {
				delete(s.recent, k)
			}
		}
		s.lastPruned = now
	}
}

func (s *Sessions) forget(k sessionKey) {
	s.mu.Lock()
	delete(s.recent, k)
	s.mu.Unlock()
}

// Release ends the subject's session at the player's request (it stopped
// playing): its place is freed at once and it cannot be admitted again by
// any token. Only the subject's own session is touched.
func (s *Sessions) Release(ctx context.Context, subject, session string) (bool, error) {
	return s.end(ctx, subject, session, EndReleased)
}

// ErrUnknownSession means an eviction named a session that is not live.
var ErrUnknownSession = errors.New("gateway: no such live session")

// Evict ends the subject's session, for an operator or the app server (a
// "sign out this device" button); ErrUnknownSession when that subject has
// no such admitted, not yet ended session. Another subject's session with
// the same id is not touched.
func (s *Sessions) Evict(ctx context.Context, subject, session string) error {
	m, err := s.rdb.Get(ctx, s.markerKey(subject, session)).Result()
	if errors.Is(err, redis.Nil) {
		return ErrUnknownSession
	}
	if err != nil {
		return fmt.Errorf("gateway: evict: %w", err)
	}
	if !strings.HasPrefix(m, "a:") {
		return ErrUnknownSession // already ended
	}
	_, err = s.end(ctx, subject, session, EndEvicted)
	return err
}

func (s *Sessions) end(ctx context.Context, subject, session string, state EndReason) (bool, error) {
	s.forget(sessionKey{subject, session})
	n, err := endScript.Run(ctx, s.rdb, []string{s.streamsKey(subject), s.markerKey(subject, session)},
		session, string(state), s.endedTTL().Milliseconds()).Int64()
	if err != nil {
		return false, fmt.Errorf("gateway: end session: %w", err)
	}
	return n == 1, nil
}

// Active returns the number of live sessions of a subject.
func (s *Sessions) Active(ctx context.Context, subject string) (int, error) {
	t, err := s.rdb.Time(ctx).Result()
	if err != nil {
		return 0, err
	}
	n, err := s.rdb.ZCount(ctx, s.streamsKey(subject), fmt.Sprint(t.Add(-s.ttl).UnixMilli()+1), "+inf").Result()
	return int(n), err
}
