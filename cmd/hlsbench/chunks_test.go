package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestModel(t *testing.T) {
	pieces := []pieceTime{{0, "video", 10}, {1, "video", 10}, {2, "video", 10}, {3, "video", 4}, {4, "title", 12}}
	for _, tc := range []struct {
		n    int
		want float64
	}{
		{1, 2 + 46 + 1},  // everything in turn
		{2, 2 + 24 + 1},  // title, 1, 3 | 0, 2
		{4, 2 + 14 + 1},  // title | 0, 3 | 1 | 2
		{20, 2 + 12 + 1}, // the longest piece
	} {
		if got := model(pieces, tc.n, 2, 1); got != tc.want {
			t.Errorf("model(%d workers) = %v, want %v", tc.n, got, tc.want)
		}
	}
}

func TestPieceTimes(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.log")
	b := filepath.Join(dir, "b.log")
	os.WriteFile(a, []byte(`{"msg":"job fanned out into pieces","seconds":3.5}
{"msg":"piece stored","piece":2,"seconds":7}
not json
{"msg":"piece stored","piece":0,"seconds":5}
`), 0o600)
	os.WriteFile(b, []byte(`{"msg":"piece stored","piece":1,"seconds":6}
{"msg":"chunked job done","join_seconds":0.25}
`), 0o600)
	ps, fan, join, err := pieceTimes([]string{a, b})
	if err != nil || len(ps) != 3 || ps[0].Seconds != 5 || ps[2].Kind != "title" || ps[1].Kind != "video" || fan != 3.5 || join != 0.25 {
		t.Fatalf("%+v %v %v %v", ps, fan, join, err)
	}
	if _, _, _, err := pieceTimes([]string{b[:len(b)-5] + "none.log"}); err == nil {
		t.Error("a missing log was read")
	}
}
