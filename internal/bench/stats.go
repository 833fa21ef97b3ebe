package main

import (
	"fmt"
	"slices"
)

// spread is one figure over several runs.
type spread []float64

func (s spread) median() float64 {
	v := slices.Clone(s)
	slices.Sort(v)
	if n := len(v); n%2 == 1 {
		return v[n/2]
	} else {
		return (v[n/2-1] + v[n/2]) / 2
	}
}

// format prints the median, then (min to max) when there was more than one run.
func (s spread) format(verb string) string {
	if len(s) == 0 {
		return "–"
	}
	m := fmt.Sprintf(verb, s.median())
	if len(s) == 1 {
		return m
	}
	return fmt.Sprintf("%s ("+verb+" to "+verb+")", m, slices.Min(s), slices.Max(s))
}

// pairedWith divides each value by den's of the same run (runs where
// either is missing or den is 0 give none).
func (s spread) pairedWith(den spread) spread {
	var out spread
	for i := range min(len(s), len(den)) {
		if den[i] != 0 {
			out = append(out, s[i]/den[i])
		}
	}
	return out
}
