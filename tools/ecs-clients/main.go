// Command ecs-clients drives a fake ECS endpoint with Alibaba Cloud's official Go SDKs,
// so that its wire protocol is checked by clients zoneproof did not write: the v1 SDK
// (github.com/aliyun/alibaba-cloud-sdk-go, RPC signature) and the V3 client
// (github.com/alibabacloud-go/ecs-20140526 on darabonba-openapi/v2, ACS3-HMAC-SHA256).
//
// It reads one call per line on stdin, {"client": "rpc"|"v3", "action": "CreateDisk",
// "params": {...}, "secret": optional override}, and writes one answer per line on stdout,
// {"status": 200, "code": "", "message": "", "body": {...}}. The scenarios live in the
// Python test that runs it; this program only makes the SDKs' calls.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"reflect"

	"github.com/alibabacloud-go/darabonba-openapi/v2/models"
	ecs "github.com/alibabacloud-go/ecs-20140526/v7/client"
	"github.com/alibabacloud-go/tea/dara"
	"github.com/alibabacloud-go/tea/tea"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/errors"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/requests"
)

type call struct {
	Client string         `json:"client"`
	Action string         `json:"action"`
	Params map[string]any `json:"params"`
	Secret string         `json:"secret"`
}

type answer struct {
	Status  int            `json:"status"`
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Body    map[string]any `json:"body"`
}

func main() {
	endpoint := flag.String("endpoint", "", "host:port of the ECS endpoint")
	region := flag.String("region", "", "region id")
	key := flag.String("key", "", "access key id")
	secret := flag.String("secret", "", "access key secret")
	flag.Parse()
	if *endpoint == "" || *region == "" || *key == "" || *secret == "" {
		fmt.Fprintln(os.Stderr, "ecs-clients: --endpoint, --region, --key and --secret are required")
		os.Exit(2)
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var c call
		if err := json.Unmarshal(in.Bytes(), &c); err != nil {
			fmt.Fprintf(os.Stderr, "ecs-clients: bad call line: %v\n", err)
			os.Exit(2)
		}
		s := *secret
		if c.Secret != "" {
			s = c.Secret
		}
		var a answer
		var err error
		switch c.Client {
		case "rpc":
			a, err = callRPC(*endpoint, *region, *key, s, c)
		case "v3":
			a, err = callV3(*endpoint, *region, *key, s, c)
		default:
			err = fmt.Errorf("unknown client %q (rpc or v3)", c.Client)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "ecs-clients: %s %s: %v\n", c.Client, c.Action, err)
			os.Exit(1)
		}
		if err := out.Encode(a); err != nil {
			fmt.Fprintf(os.Stderr, "ecs-clients: %v\n", err)
			os.Exit(1)
		}
	}
	if err := in.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "ecs-clients: reading calls: %v\n", err)
		os.Exit(1)
	}
}

// callRPC sends a CommonRequest, the v1 SDK's way to call any action: parameters go in
// the query as given (repeat lists as "Tag.1.Key", id lists as JSON text).
func callRPC(endpoint, region, key, secret string, c call) (answer, error) {
	client, err := sdk.NewClientWithAccessKey(region, key, secret)
	if err != nil {
		return answer{}, err
	}
	client.GetConfig().AutoRetry = false
	req := requests.NewCommonRequest()
	req.Method = "POST"
	req.Scheme = "http"
	req.Domain = endpoint
	req.Version = "2014-05-26"
	req.ApiName = c.Action
	for name, value := range c.Params {
		req.QueryParams[name] = fmt.Sprint(value)
	}
	resp, err := client.ProcessCommonRequest(req)
	if serverErr, ok := err.(*errors.ServerError); ok {
		return answer{Status: serverErr.HttpStatus(), Code: serverErr.ErrorCode(), Message: serverErr.Message()}, nil
	}
	if err != nil {
		return answer{}, err
	}
	a := answer{Status: resp.GetHttpStatus()}
	return a, json.Unmarshal(resp.GetHttpContentBytes(), &a.Body)
}

// callV3 calls the typed <Action>WithOptions method of the ECS client, with the
// parameters converted into its <Action>Request as the SDK's own JSON names them.
func callV3(endpoint, region, key, secret string, c call) (answer, error) {
	client, err := ecs.NewClient(&models.Config{
		AccessKeyId: tea.String(key), AccessKeySecret: tea.String(secret),
		RegionId: tea.String(region), Endpoint: tea.String(endpoint), Protocol: tea.String("http"),
	})
	if err != nil {
		return answer{}, err
	}
	method := reflect.ValueOf(client).MethodByName(c.Action + "WithOptions")
	if !method.IsValid() {
		return answer{}, fmt.Errorf("the ECS client has no %sWithOptions", c.Action)
	}
	request := reflect.New(method.Type().In(0).Elem())
	raw, err := json.Marshal(c.Params)
	if err != nil {
		return answer{}, err
	}
	if err := json.Unmarshal(raw, request.Interface()); err != nil {
		return answer{}, fmt.Errorf("params do not fit %s: %w", request.Type(), err)
	}
	results := method.Call([]reflect.Value{request, reflect.ValueOf(&dara.RuntimeOptions{Autoretry: tea.Bool(false)})})
	if errValue := results[1]; !errValue.IsNil() {
		if sdkErr, ok := errValue.Interface().(*tea.SDKError); ok {
			return answer{Status: tea.IntValue(sdkErr.StatusCode), Code: tea.StringValue(sdkErr.Code),
				Message: tea.StringValue(sdkErr.Message)}, nil
		}
		return answer{}, errValue.Interface().(error)
	}
	a := answer{Status: 200}
	body := results[0].Elem().FieldByName("Body").Interface()
	raw, err = json.Marshal(body)
	if err != nil {
		return answer{}, err
	}
	return a, json.Unmarshal(raw, &a.Body)
}
