package gateway

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hlsvault/hlsvault/internal/catalog"
	"github.com/hlsvault/hlsvault/internal/playlist"
	"github.com/hlsvault/hlsvault/internal/storage"
	"github.com/hlsvault/hlsvault/internal/synthetic"
	"github.com/hlsvault/hlsvault/internal/testenv"
	"github.com/hlsvault/hlsvault/internal/testenv/fixtures"
	"github.com/hlsvault/hlsvault/internal/testenv/hlscheck"
	"github.com/hlsvault/hlsvault/playback"
)

// TestKeyPeriodsThroughGateway: a rendition encrypted under three key
// periods (8 s periods, 4 s segments, 20 s) is served with each segment's
// EXT-X-KEY naming its own period's key at the gateway's key endpoint, and
// each key endpoint returns that period's key. The entry records each
// resource's period and where it ends. A stored playlist naming a key
// outside the version's set is refused.
func TestKeyPeriodsThroughGateway(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, fixtures.FS(t), envOptions{})
	video := testenv.Name("vid")
	fx, err := synthetic.Publish(ctx, e.db, e.store, e.keyring, synthetic.Title{
		Video: video, Duration: 20 * time.Second, Segment: 4 * time.Second, Renditions: []string{"240p", "144p"},
		SegmentBytes: 1000, KeyPeriod: 8 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(fx.KeyIDs) != 3 {
		t.Fatalf("published keys %v, want 3", fx.KeyIDs)
	}
	cur, err := e.db.CurrentVersion(ctx, video)
	if err != nil {
		t.Fatal(err)
	}
	tok := e.token(video, "alice", playback.NewSessionID(), time.Hour)
	r := e.get(withToken("/v1/videos/"+video+"/240p/index.m3u8", tok))
	if r.code != 200 {
		t.Fatalf("rendition: %d %s", r.code, r.body)
	}
	media, err := playlist.ParseMedia(bytes.NewReader(r.body))
	if err != nil || len(media.Segments) != 5 {
		t.Fatalf("rendition: %v\n%s", err, r.body)
	}
	wantPeriod := []int{0, 0, 1, 1, 2}
	for i, s := range media.Segments {
		want := "/v1/keys/" + fx.KeyIDs[wantPeriod[i]] + "?token=" + tok
		if s.Key == nil || s.Key.URI != want {
			t.Errorf("segment %d key %+v, want %s", i, s.Key, want)
		}
	}
	for i, id := range fx.KeyIDs {
		ck, err := e.keyring.Unwrap(cur.Keys[i].KEKID, cur.Keys[i].KeyID, cur.Keys[i].Wrapped)
		if err != nil || cur.Keys[i].KeyID != id {
			t.Fatal(err)
		}
		if k := e.get(withToken("/v1/keys/"+id, tok)); k.code != 200 || !bytes.Equal(k.body, ck.Bytes()) {
			t.Errorf("key of period %d: %d", i, k.code)
		}
	}
	me, err := e.srv.mediaEntry(ctx, video, fx.Version, "240p", nil)
	if err != nil {
		t.Fatal(err)
	}
	wantEnd := []float64{8, 8, 16, 16, 20}
	for i := range me.tmpl.Resources {
		if me.period[i] != wantPeriod[i] || me.periodEnd[i] != wantEnd[i] {
			t.Errorf("resource %d: period %d ending at %v, want %d ending at %v", i, me.period[i], me.periodEnd[i], wantPeriod[i], wantEnd[i])
		}
	}

	// The rewritten master and media playlists, a key URI per period,
	// pass third-party strict parsing.
	// (The 240p playlist only: fetching 144p here would cache the entry
	// that the forgery below must make the gateway read again.)
	if m := e.get(withToken("/v1/videos/"+video+"/master.m3u8", tok)); m.code != 200 {
		t.Fatalf("master: %d %s", m.code, m.body)
	} else {
		hlscheck.StrictAll(t, map[string][]byte{"master": m.body, "240p": r.body})
	}

	// A playlist naming a key that is not one of the version's.
	name := catalog.VersionPrefix(video, fx.Version) + "144p/index.m3u8"
	stored := e.object(name)
	forged := bytes.ReplaceAll(stored, []byte(fx.KeyIDs[1]), []byte("k_"+strings.Repeat("f", 32)))
	if err := e.store.Delete(ctx, name); err != nil {
		t.Fatal(err)
	}
	if err := e.store.Put(ctx, name, bytes.NewReader(forged), int64(len(forged)), storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if r := e.get(withToken("/v1/videos/"+video+"/144p/index.m3u8", tok)); r.code != 500 || bytes.Contains(r.body, []byte("/v1/keys/")) {
		t.Errorf("playlist naming a foreign key: %d %s", r.code, r.body)
	}
	if !strings.Contains(e.logs.String(), "names none of the version's keys") {
		t.Error("the refusal is not logged")
	}
}

// BenchmarkMediaEntry2h compiles a 2-hour rendition (1800 segments of 4 s)
// into a gateway entry and expands it, with one key and with 5-minute key
// periods (24 keys): what key periods add to a cold rendition load and to
// every rendition request.
func BenchmarkMediaEntry2h(b *testing.B) {
	for _, periods := range []int{1, 24} {
		b.Run(strconv.Itoa(periods)+"keys", func(b *testing.B) {
			vkeys := make([]catalog.WrappedKey, periods)
			for i := range vkeys {
				vkeys[i] = catalog.WrappedKey{KeyID: fmt.Sprintf("k_%032x", i+1), Period: i, Start: 300 * float64(i)}
			}
			m := playlist.Media{Independent: true}
			for i := range 1800 {
				k := catalog.KeyAt(vkeys, 4*float64(i))
				m.Segments = append(m.Segments, playlist.Segment{URI: fmt.Sprintf("seg_%05d.ts", i), Duration: 4, Size: 1 << 20,
					KeyURI: "https://video.example.com/v1/keys/" + vkeys[k].KeyID})
			}
			var buf bytes.Buffer
			if err := playlist.WriteMedia(&buf, m); err != nil {
				b.Fatal(err)
			}
			seg := make([]string, 1800)
			for i := range seg {
				seg[i] = fmt.Sprintf("/v1/segments/hls/v/v1/720p/seg_%05d.ts?exp=1700000000&sig=0123456789abcdefghijkl", i)
			}
			b.ReportAllocs()
			for b.Loop() {
				tmpl, err := playlist.CompileMedia(buf.Bytes())
				if err != nil {
					b.Fatal(err)
				}
				e, err := newMediaEntry(tmpl, vkeys)
				if err != nil || len(e.keyIDs) != periods {
					b.Fatal(err)
				}
				keyURIs := make([]string, len(e.keyIDs))
				for i, id := range e.keyIDs {
					keyURIs[i] = "/v1/keys/" + id + "?token=t"
				}
				if _, err := e.tmpl.Expand(nil, func(i int) (string, error) { return seg[i], nil },
					func(i int) (string, error) { return keyURIs[i], nil }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
