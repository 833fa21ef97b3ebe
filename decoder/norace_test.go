//go:build !race

package decoder

const raceEnabled = false
