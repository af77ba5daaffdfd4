// Command hashsecret prints the bcrypt hash of a client secret at a given
// cost, so bench/run.sh can give our client the same hashing cost as Hydra's.
package main

import (
	"flag"
	"fmt"
	"os"

	"golang.org/x/crypto/bcrypt"
)

func main() {
	cost := flag.Int("cost", bcrypt.DefaultCost, "bcrypt cost")
	secret := flag.String("secret", "bench-secret", "client secret")
	flag.Parse()
	h, err := bcrypt.GenerateFromPassword([]byte(*secret), *cost)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hashsecret:", err)
		os.Exit(1)
	}
	fmt.Println(string(h))
}
