package ids

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateVideoID(t *testing.T) {
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"abc", true},
		{"3f2b6c1e-8d4a-4f6b-9c2d-1a2b3c4d5e6f", true},
		{"Video_01-x", true},
		{strings.Repeat("a", 128), true},
		{strings.Repeat("a", 129), false},
		{"", false},
		{"..", false},
		{"a/b", false},
		{"a b", false},
		{"-", true},
		{"a\x00", false},
		{"é", false},
		{"a|b", false},
	} {
		err := ValidateVideoID(tc.id)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateVideoID(%q) = %v, want ok=%v", tc.id, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidVideoID) {
			t.Errorf("ValidateVideoID(%q) = %v, not ErrInvalidVideoID", tc.id, err)
		}
	}
}

func FuzzValidateVideoID(f *testing.F) {
	for _, s := range []string{"abc", "../etc", "a/b", "", "UUID-0000-1111"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if ValidateVideoID(id) != nil {
			return
		}
		if strings.ContainsAny(id, "/\\.%?#: \x00") || len(id) == 0 || len(id) > MaxVideoIDLen {
			t.Fatalf("accepted unsafe id %q", id)
		}
	})
}
