//go:build race

package validator

// raceSlack is the allocation count the race detector may add.
const raceSlack = 1
