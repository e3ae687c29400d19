// gocheck: what Go's encoding/json and crypto/ed25519 make of our broker contract bytes,
// so tests compare against the real thing instead of our reading of it. Written for the
// kidp-ops tests from the seed system's published contract (the CallbackRequest and
// ProvisionRequest field lists and json tags), not copied from it.
//
// stdin: one JSON object {"mode": ..., ...}; stdout: one JSON object.
//
//	mode "callback": {"body", "timestamp", "signature", "publicKey"} -> {"decodeError",
//	  "remarshal", "equal", "verified"}: decode the body into CallbackRequest, marshal it
//	  again and verify the signature over timestamp + "." + the re-marshalled bytes, as a
//	  manager that re-marshals before verifying does.
//	mode "provision": {"request": {...}} -> {"bytes"}: json.Marshal of ProvisionRequest.
package main

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"os"
	"time"
)

type CallbackRequest struct {
	DeploymentID         string                 `json:"deploymentId"`
	ResourceType         string                 `json:"resourceType"`
	ResourceName         string                 `json:"resourceName"`
	Namespace            string                 `json:"namespace"`
	Status               string                 `json:"status"`
	Phase                string                 `json:"phase"`
	Message              string                 `json:"message"`
	Error                string                 `json:"error,omitempty"`
	Time                 time.Time              `json:"time"`
	Endpoint             string                 `json:"endpoint,omitempty"`
	Port                 int32                  `json:"port,omitempty"`
	ConnectionSecret     string                 `json:"connectionSecret,omitempty"`
	Details              map[string]interface{} `json:"details,omitempty"`
	AdditionalMetadata   map[string]string      `json:"additionalMetadata,omitempty"`
	EstimatedMonthlyCost float64                `json:"estimatedMonthlyCost,omitempty"`
}

type ProvisionRequest struct {
	ResourceType string                 `json:"resourceType"`
	ResourceName string                 `json:"resourceName"`
	Namespace    string                 `json:"namespace"`
	Team         string                 `json:"team"`
	Owner        string                 `json:"owner"`
	CallbackURL  string                 `json:"callbackUrl"`
	Spec         map[string]interface{} `json:"spec"`
}

type input struct {
	Mode      string           `json:"mode"`
	Body      string           `json:"body"`
	Timestamp string           `json:"timestamp"`
	Signature string           `json:"signature"`
	PublicKey string           `json:"publicKey"`
	Request   ProvisionRequest `json:"request"`
}

func main() {
	var in input
	out := map[string]interface{}{}
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		out["inputError"] = err.Error()
	} else if in.Mode == "provision" {
		raw, _ := json.Marshal(in.Request)
		out["bytes"] = string(raw)
	} else {
		callback(in, out)
	}
	_ = json.NewEncoder(os.Stdout).Encode(out)
}

func callback(in input, out map[string]interface{}) {
	var cb CallbackRequest
	if err := json.Unmarshal([]byte(in.Body), &cb); err != nil {
		out["decodeError"] = err.Error()
		return
	}
	again, err := json.Marshal(cb)
	if err != nil {
		out["decodeError"] = err.Error()
		return
	}
	out["remarshal"] = string(again)
	out["equal"] = string(again) == in.Body
	key, errKey := base64.StdEncoding.DecodeString(in.PublicKey)
	sig, errSig := base64.StdEncoding.DecodeString(in.Signature)
	ok := errKey == nil && errSig == nil && len(key) == ed25519.PublicKeySize &&
		ed25519.Verify(ed25519.PublicKey(key), append([]byte(in.Timestamp+"."), again...), sig)
	out["verified"] = ok
}
