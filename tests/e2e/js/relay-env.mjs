// What tests/e2e/test_openai_js.py tells the Node tests about the local host it started:
//   RELAY_BASE_URL  http://127.0.0.1:<port>/api/v1
//   RELAY_TOKEN     a dev access token (Easy Auth validates it like an Entra token)
//   RELAY_OID, RELAY_TID, RELAY_APPLICATION_NAME   whom the token names
//   RELAY_OTHER_TOKEN   a token of another user of the same app
//   EMULATOR_URL    the Azure OpenAI emulator, to see what the relay sent upstream
const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run this through tests/e2e/test_openai_js.py`);
  return value;
};

export const baseURL = env("RELAY_BASE_URL");
export const apiKey = env("RELAY_TOKEN");
export const otherApiKey = env("RELAY_OTHER_TOKEN");
const emulator = env("EMULATOR_URL");
/** The user_security_context the relay sends upstream for the token's caller. */
export const expectedContext = {
  application_name: env("RELAY_APPLICATION_NAME"),
  end_user_id: env("RELAY_OID"),
  end_user_tenant_id: env("RELAY_TID"),
  source_ip: "127.0.0.1",
};

/** Every request the emulator received, oldest first, as it recorded them. */
export async function emulatorRecords() {
  return (await fetch(`${emulator}/_emulator/requests`)).json();
}
